//! Errors, one enum per area, and [`enum@Error`] that holds any of them.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::domain::config::{AttachedMode, XdpMode};
use crate::domain::label::LabelError;
use crate::domain::prefix::PrefixError;
use crate::sys::privileges::MissingCapabilities;

/// Loading the dataplane into the kernel failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The process lacks a capability.
    #[error("cannot load the XDP program: {0}")]
    Privileges(MissingCapabilities),
    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A map of the loaded object could not be taken over.
    #[error(transparent)]
    Map {
        /// The map operation that failed.
        #[from]
        source: MapError,
    },
    /// The kernel or libbpf refused (verifier, BTF, resources). libbpf's log,
    /// forwarded to the `log` facade at debug level, has the details.
    #[error("the kernel refused the XDP program while {step}: {source} (enable debug logging for libbpf's log)")]
    Kernel {
        /// What was being done.
        step: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

/// Attaching or detaching failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// No interface of that name in the calling thread's network namespace.
    #[error("no interface named {iface:?} in this network namespace (see `ip link`)")]
    NoSuchInterface {
        /// The name given.
        iface: String,
    },
    /// This encapsulator is already attached.
    #[error("this encapsulator is already attached to {iface}; detach it first or load another one")]
    AlreadyAttached {
        /// Where it is attached.
        iface: String,
    },
    /// Another XDP program holds the interface.
    #[error(
        "{iface} already has an XDP program attached ({errno}); remove it first \
         (`ip link set dev {iface} xdp off`, or stop the process holding its link)"
    )]
    InterfaceBusy {
        /// The interface.
        iface: String,
        /// EBUSY or EEXIST.
        errno: Errno,
    },
    /// The process lacks a capability.
    #[error("cannot attach to {iface}: {missing}")]
    Privileges {
        /// The interface.
        iface: String,
        /// What is missing.
        missing: MissingCapabilities,
    },
    /// The interface or driver does not support the mode asked for.
    #[error("{iface} does not support {mode} XDP ({}); {hint}", fmt_tried(.tried))]
    ModeUnsupported {
        /// The interface.
        iface: String,
        /// The mode asked for.
        mode: XdpMode,
        /// Each mode tried and the kernel's errno.
        tried: Vec<(AttachedMode, Errno)>,
        /// What to try instead.
        hint: &'static str,
    },
    /// Reading the host's addresses (the never-label table) failed.
    #[error("reading the host's addresses failed: {0}")]
    HostAddresses(#[source] Box<Error>),
    /// A read-only handle cannot detach what another process owns.
    #[error("this handle on the pinned dataplane is read-only: only its owner detaches it")]
    ReadOnly,
    /// TCP segmentation offload is on for an egress attach.
    #[error(
        "{iface} segments TCP itself (TSO is on): labelled super-packets would reach the NIC whole, and few NICs \
         segment behind MPLS labels. Turn TSO off (`ethtool -K {iface} tso off`; GSO stays on and segments in \
         software after the push), or, for a NIC known to segment MPLS, `attach --allow-tso` (EncapsulatorBuilder::allow_tso(true))"
    )]
    TsoEnabled {
        /// The interface.
        iface: String,
    },
    /// The device's offload settings could not be read.
    #[error("reading {iface}'s offload settings (ethtool) failed: {errno}")]
    Ethtool {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// The egress (tcx) attach was refused.
    #[error("attaching to {iface}'s egress (tcx) failed: {errno}; tcx needs Linux 6.6 or later")]
    Egress {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// This decapsulator handle was adopted running on the other hook: it
    /// holds no program for this one.
    #[error(
        "this handle adopted a decapsulator running on {running} and holds no {wanted} program: detach it and load \
         a new decapsulator"
    )]
    NoProgramForHook {
        /// The hook asked for (`XDP` or `TC ingress`).
        wanted: &'static str,
        /// The hook it was adopted on.
        running: &'static str,
    },
    /// The ingress (tcx) attach was refused.
    #[error("attaching to {iface}'s ingress (tcx) failed: {errno}; tcx needs Linux 6.6 or later")]
    Ingress {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// Loading the egress program failed.
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
    /// Pinning failed (the program was not left attached).
    #[error(transparent)]
    Pin(#[from] PinError),
    /// Moving a pinned link to this build's program failed.
    #[error("replacing the program attached to {iface} failed: {errno}; the old program keeps running")]
    Replace {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// Detaching failed.
    #[error("detaching from {iface} failed: {errno}")]
    Detach {
        /// The interface.
        iface: String,
        /// The kernel's errno.
        errno: Errno,
    },
}

impl AttachError {
    /// The error for a refused tcx attach (`hook` is [`AttachedMode::Egress`]
    /// or [`AttachedMode::Ingress`]).
    pub(crate) fn from_tcx(iface: &str, hook: AttachedMode, errno: Errno) -> AttachError {
        let iface = iface.to_owned();
        match errno {
            Errno::EPERM | Errno::EACCES => AttachError::from_attempts(&iface, XdpMode::Auto, vec![(hook, errno)]),
            Errno::ENODEV => AttachError::NoSuchInterface { iface },
            errno if hook == AttachedMode::Ingress => AttachError::Ingress { iface, errno },
            errno => AttachError::Egress { iface, errno },
        }
    }

    /// The error for a failed XDP attach, from the kernel's answer to each
    /// mode tried (the last one decides).
    pub(crate) fn from_attempts(iface: &str, mode: XdpMode, tried: Vec<(AttachedMode, Errno)>) -> AttachError {
        let iface = iface.to_owned();
        match tried.last().map(|t| t.1) {
            Some(errno @ (Errno::EBUSY | Errno::EEXIST)) => AttachError::InterfaceBusy { iface, errno },
            Some(Errno::EPERM | Errno::EACCES) => AttachError::Privileges {
                iface,
                missing: crate::sys::privileges::missing()
                    .unwrap_or_else(|| crate::sys::privileges::MissingCapabilities(vec!["CAP_NET_ADMIN"])),
            },
            Some(Errno::ENODEV) => AttachError::NoSuchInterface { iface },
            _ => AttachError::ModeUnsupported {
                iface,
                mode,
                tried,
                hint: match mode {
                    XdpMode::Native => {
                        "the driver has no native XDP; use generic or auto mode (`--mode generic`, XdpMode::Generic)"
                    }
                    XdpMode::Offload => {
                        "offload needs a NIC that runs BPF and a program without helpers it lacks; use Native or Auto"
                    }
                    _ => "see the kernel log (dmesg) and the interface's driver",
                },
            },
        }
    }
}

fn fmt_tried(tried: &[(AttachedMode, Errno)]) -> String {
    tried.iter().map(|(m, e)| format!("{m}: {e}")).collect::<Vec<_>>().join(", ")
}

/// A map operation failed in the kernel.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("BPF map {map}: {op} failed: {errno}")]
pub struct MapError {
    /// The map.
    pub map: &'static str,
    /// The operation.
    pub op: &'static str,
    /// The kernel's errno.
    pub errno: Errno,
}

/// A route was refused or could not be programmed. The tables are unchanged
/// whenever this is returned, except for [`RouteError::NotSaved`].
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The prefix is not valid.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A label or stack is not valid.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// A policy is not valid.
    #[error(transparent)]
    Policy(#[from] crate::domain::policy::PolicyError),
    /// A table is full: a route table of a family, the policy table, or one
    /// of DIR-24-8's pools. `knob` names the setting that sizes it.
    #[error("the {family} table is full ({capacity} entries); remove some, or load with a larger capacity: {knob}")]
    TableFull {
        /// "IPv4", "IPv6", "alternate IPv4", "policy", "IPv4 source", ...
        family: &'static str,
        /// Its capacity.
        capacity: u32,
        /// The command's flag and the builder method that size it, e.g.
        /// "--max-policies (EncapsulatorBuilder::max_policies)".
        knob: &'static str,
    },
    /// A host route for one of this host's own addresses, which are never labelled.
    #[error(
        "{prefix} is one of this host's own addresses: traffic to it is never labelled, so it cannot \
         have a route (the host's addresses are read at attach and by every command that changes the \
         dataplane, and followed live by the agent)"
    )]
    LocalAddress {
        /// The prefix given.
        prefix: ipnetwork::IpNetwork,
    },
    /// The kernel refused the map operation.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The encapsulator was opened read-only ([`crate::encap::AdoptOptions::read_only`]).
    #[error(
        "this handle on the pinned dataplane is read-only; open it without read_only (its owner must let go first)"
    )]
    ReadOnly,
    /// An entry of a desired state was refused (nothing was applied).
    #[error(transparent)]
    Invalid(#[from] crate::domain::desired::DesiredError),
    /// A named policy (a shared policy object, docs/policy-objects.md)
    /// cannot take this change.
    #[error("policy {name:?}: {problem}; {remedy}")]
    PolicyObject {
        /// The policy's name.
        name: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        remedy: &'static str,
    },
    /// The apply would remove more than its guard allows
    /// ([`crate::ApplyOptions::max_remove_share`]); nothing changed.
    #[error(
        "this apply removes {removed} of {current} routes ({:.0}%), more than max_remove_share {:.0}%: nothing \
         changed; it would remove e.g. {}; check it with a dry run, then apply it without the guard (--force)",
        *removed as f64 * 100.0 / (*current).max(1) as f64,
        max_share * 100.0,
        sample.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    RemovalRefused {
        /// Routes the apply would remove.
        removed: usize,
        /// Routes in force.
        current: usize,
        /// The guard: the largest share it lets go.
        max_share: f64,
        /// The first of the routes it would remove (at most ten), table and prefix.
        sample: Vec<(crate::domain::route::Table, ipnetwork::IpNetwork)>,
        /// Routes it would add.
        added: usize,
        /// Routes it would replace.
        replaced: usize,
    },
    /// A removal named a route BGP taught (origin `bgp`): the agent's API
    /// and the command remove local routes only, BGP's is withdrawn in BGP.
    #[error(
        "{prefix} is BGP's route (origin bgp{}): withdraw it in BGP, or override it with `set` ({})",
        policy.as_deref().map(|p| format!(", {p}")).unwrap_or_default(),
        if *local_wins {
            "a local route wins over BGP's under the precedence in force"
        } else {
            "only after putting the local origins above bgp in --bgp-precedence: bgp ranks first now"
        }
    )]
    BgpRoute {
        /// The prefix given.
        prefix: ipnetwork::IpNetwork,
        /// The SR policy it is steered into, as `routes` shows it (when known).
        policy: Option<String>,
        /// Whether a local route set for the prefix would be used instead.
        local_wins: bool,
    },
    /// The change is in force, but the state file of the pinned dataplane
    /// could not be rewritten: a process adopting it would not see the change.
    #[error("the change is in force but was not saved beside the pins ({0}); a process adopting this dataplane would not see it")]
    NotSaved(#[source] Box<PinError>),
    /// A handle adopted for a change of a few routes had to read the rest
    /// of the state beside the pins, and could not: nothing was changed.
    #[error("the state beside the pins could not be read ({0}); nothing was changed: run `verify`, or adopt the dataplane again")]
    Unreadable(#[source] Box<PinError>),
}

impl RouteError {
    /// [`RouteError::TableFull`] for `family`, naming the knob that sizes it.
    pub(crate) fn full(family: &'static str, capacity: u32) -> RouteError {
        let knob = if family.contains("DIR-24-8 groups") {
            "--dir-groups (EncapsulatorBuilder::dir_groups)"
        } else if family.contains("route values") {
            "--max-route-values (EncapsulatorBuilder::max_route_values)"
        } else if family == "policy" {
            "--max-policies (EncapsulatorBuilder::max_policies)"
        } else if family.contains("IPv6") {
            "--max-routes-v6 (EncapsulatorBuilder::max_routes)"
        } else {
            "--max-routes-v4 (EncapsulatorBuilder::max_routes)"
        };
        RouteError::TableFull { family, capacity, knob }
    }
}

/// BPF_PROG_TEST_RUN failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestRunError {
    /// The frame does not fit the test buffer.
    #[error("a {len}-byte frame is too large for BPF_PROG_TEST_RUN (at most {max} bytes)")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The kernel refused the run.
    #[error("BPF_PROG_TEST_RUN failed: {0} (needs CAP_BPF / root)")]
    Kernel(Errno),
    /// A decapsulator handle adopted on the other hook holds no program for this one.
    #[error("this handle adopted a decapsulator running on {running} and holds no {wanted} program to run")]
    NoProgram {
        /// The hook asked for (`XDP` or `TC ingress`).
        wanted: &'static str,
        /// The hook it was adopted on.
        running: &'static str,
    },
}

/// Pinning a dataplane, or adopting a pinned one, failed.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// Nothing is pinned for this interface in this network namespace.
    #[error(
        "no dataplane of lnetd-host-encap is pinned on {iface} in this network namespace (looked in {}){}",
        .dir.display(),
        match .other_program {
            _ if is_decap(.dir) => "; attach a decapsulator with `lnetd-host-encap -i IFACE pop attach` \
                                    (DecapsulatorBuilder::pinned())"
                .to_owned(),
            Some(id) => format!(
                "; another XDP program (id {id}) is attached to {iface}: remove it (`ip link set dev {iface} xdp off`, \
                 or stop its owner) before attaching this one"
            ),
            None => " and no XDP program is attached; attach one with `lnetd-host-encap attach` \
                     (EncapsulatorBuilder::pinned())"
                .to_owned(),
        }
    )]
    NotPinned {
        /// The interface.
        iface: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The id of another XDP program attached there, if any.
        other_program: Option<u32>,
    },
    /// A dataplane is already pinned for this interface.
    #[error(
        "a dataplane is already pinned in {}; {}",
        .dir.display(),
        if is_decap(.dir) {
            "adopt it (Decapsulator::open, or `lnetd-host-encap -i IFACE pop ...`) or detach it first \
             (`lnetd-host-encap -i IFACE pop detach`)"
        } else {
            "adopt it (Encapsulator::open, or any lnetd-host-encap command) or detach it first \
             (`lnetd-host-encap -i IFACE detach`)"
        }
    )]
    AlreadyPinned {
        /// Its directory.
        dir: PathBuf,
    },
    /// Another process (an agent, another command) owns the pinned dataplane.
    #[error(
        "the dataplane pinned in {} is in use by another process (the agent, or another lnetd-host-encap \
         command); ask that process, or stop it first",
        .dir.display()
    )]
    Busy {
        /// Its directory.
        dir: PathBuf,
    },
    /// The pin directory is not on bpffs.
    #[error(
        "{} is not on a BPF filesystem; mount one (`mount -t bpf bpf /sys/fs/bpf`) or choose another root \
         (EncapsulatorBuilder::pinned_at)",
        .dir.display()
    )]
    NotBpffs {
        /// The directory.
        dir: PathBuf,
    },
    /// The pins would go to a bpffs that is not the host's: this process has
    /// its own mount namespace (`ip netns exec` remounts /sys), so they would
    /// vanish with it while the command reported success.
    #[error(
        "{} is not on the host's bpffs: this process runs in its own mount namespace (as under `ip netns exec`, \
         which remounts /sys), where the host's pins cannot be seen and pins made vanish when it exits; enter only \
         the network namespace instead: `nsenter --net=/run/netns/NAME lnetd-host-encap -i IFACE ...`",
        .dir.display()
    )]
    NotHostBpffs {
        /// The pin directory.
        dir: PathBuf,
    },
    /// The pinned link no longer attaches the live interface of that name in
    /// this network namespace (the interface or the namespace was deleted and
    /// recreated): nothing runs the pinned program there.
    #[error(
        "the link pinned at {} no longer attaches {iface} in this network namespace: {reason}; the pins are stale: \
         remove them with `lnetd-host-encap -i {iface} detach --force`, then attach again",
        .path.display()
    )]
    StaleLink {
        /// The interface.
        iface: String,
        /// The link's pin.
        path: PathBuf,
        /// What the kernel reports instead.
        reason: String,
    },
    /// An interface name that cannot be a directory name.
    #[error("{iface:?} is not an interface name")]
    BadInterfaceName {
        /// The name given.
        iface: String,
    },
    /// The pinned state was written by a build whose format this one cannot read.
    #[error(
        "the dataplane pinned in {} was written by lnetd-host-encap {written_by} (state format {found}); this is \
         {ours_version} (format {ours}). Use a build that reads format {found}, or detach it (traffic goes \
         unlabelled) and attach again with this one",
        .dir.display()
    )]
    Incompatible {
        /// The format found.
        found: u32,
        /// The version that wrote it.
        written_by: String,
        /// This build's format.
        ours: u32,
        /// This build's version.
        ours_version: &'static str,
        /// The state's directory.
        dir: PathBuf,
    },
    /// The state file is damaged or was not written by this library.
    #[error("the state file {} cannot be read: {reason}; detach and attach again", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The pinned link belongs to an interface that has since been replaced.
    #[error(
        "the dataplane pinned for {iface} was attached to ifindex {pinned}, but {iface} is now ifindex {now}: \
         the interface was recreated; remove the stale pins with `lnetd-host-encap -i {iface} detach --force`, then \
         attach again"
    )]
    StaleInterface {
        /// The interface.
        iface: String,
        /// The ifindex recorded.
        pinned: u32,
        /// Its ifindex now.
        now: u32,
    },
    /// The pins or the state cannot even be looked for: a pinned
    /// dataplane's directories are root's. Told apart from "nothing is
    /// pinned", which would send an unprivileged user to remove a program
    /// that is ours.
    #[error(
        "cannot look for a pinned dataplane in {}: permission denied; a pinned dataplane is root's: run this as \
         root (through a running agent, reads need no privileges)",
        .path.display()
    )]
    NoAccess {
        /// The path that could not be looked at.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {} failed: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused to pin or open a BPF object.
    #[error("{op} {} failed: {errno}", .path.display())]
    Kernel {
        /// What was being done.
        op: &'static str,
        /// The pin.
        path: PathBuf,
        /// The kernel's errno.
        errno: Errno,
    },
}

/// Any error of this crate.
///
/// `Display` is the whole message (what the command prints after
/// `lnetd-host-encap: `). `Debug` is what `fn main() -> Result<(), Error>`
/// shows: the same message, then any cause it does not already quote (as
/// `anyhow` prints a chain); `{:#?}` shows the variant and its fields.
///
/// Refused values (a label, stack, prefix, policy or desired state) reach
/// callers by one path, [`Error::Route`] with the [`RouteError`] that names
/// them, whether a route was being set or a value being built, so a label
/// error is matched as `Error::Route(RouteError::Label(..))`:
///
/// ```
/// use lnetd_host_encap::{Error, Label, errors::LabelError, errors::RouteError};
/// let err = Error::from(Label::new(1 << 20).unwrap_err());
/// assert!(matches!(err, Error::Route(RouteError::Label(LabelError::OutOfRange { value: 1_048_576 }))));
/// assert_eq!(
///     format!("{err:?}"),
///     "label 1048576 is out of range: MPLS labels are 0..=1048575 (20 bits)"
/// );
/// ```
///
/// More variants may come: match with a wildcard arm.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`LoadError`].
    #[error(transparent)]
    Load(#[from] LoadError),
    /// See [`AttachError`].
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// See [`RouteError`].
    #[error(transparent)]
    Route(#[from] RouteError),
    /// See [`MapError`].
    #[error(transparent)]
    Map(#[from] MapError),
    /// See [`TestRunError`].
    #[error(transparent)]
    TestRun(#[from] TestRunError),
    /// See [`PinError`].
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A system call failed.
    #[error("{call} failed: {errno}")]
    Sys {
        /// The call.
        call: &'static str,
        /// Its errno.
        errno: Errno,
    },
}

/// Refused values reach callers by one path: [`Error::Route`] with the
/// [`RouteError`] that names them, whether a route was being set or a value
/// being built.
macro_rules! into_route_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::Route(RouteError::from(e))
            }
        }
    )*};
}
into_route_error!(LabelError, PrefixError, crate::domain::policy::PolicyError);

impl From<crate::domain::desired::DesiredError> for Error {
    /// A refused desired state reaches callers by one path: [`RouteError::Invalid`].
    fn from(e: crate::domain::desired::DesiredError) -> Error {
        Error::Route(RouteError::Invalid(e))
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            return match self {
                Error::Load(e) => f.debug_tuple("Load").field(e).finish(),
                Error::Attach(e) => f.debug_tuple("Attach").field(e).finish(),
                Error::Route(e) => f.debug_tuple("Route").field(e).finish(),
                Error::Map(e) => f.debug_tuple("Map").field(e).finish(),
                Error::TestRun(e) => f.debug_tuple("TestRun").field(e).finish(),
                Error::Pin(e) => f.debug_tuple("Pin").field(e).finish(),
                Error::Sys { call, errno } => f.debug_struct("Sys").field("call", call).field("errno", errno).finish(),
            };
        }
        let message = self.to_string();
        f.write_str(&message)?;
        write_causes(f, std::error::Error::source(self), message)
    }
}

/// Whether a pin directory is a decapsulator's (`<root>/decap/...`): its
/// errors name the `pop` commands.
fn is_decap(dir: &std::path::Path) -> bool {
    dir.components().any(|c| c.as_os_str() == "decap")
}

/// `Debug` as the message and its causes, as for [`Error`]: what
/// `fn main() -> Result<(), Box<dyn std::error::Error>>` and `unwrap` print
/// is what went wrong and what to do, not a struct dump. `{:#?}` puts the
/// type's name first.
macro_rules! debug_is_the_message {
    ($($t:path),* $(,)?) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let message = self.to_string();
                if f.alternate() {
                    let path = stringify!($t);
                    write!(f, "{}: ", path.rsplit("::").next().unwrap_or(path).trim())?;
                }
                f.write_str(&message)?;
                write_causes(f, std::error::Error::source(self), message)
            }
        }
    )*};
}

debug_is_the_message!(
    LoadError,
    AttachError,
    MapError,
    RouteError,
    TestRunError,
    PinError,
    crate::domain::prefix::PrefixError,
    crate::domain::desired::DesiredError,
    crate::domain::desired::DesiredFileError,
    crate::domain::label::LabelError,
    crate::domain::config::ConfigParseError,
    crate::domain::policy::PolicyError,
);

/// Writes the causes in `source`'s chain that the text shown so far does not
/// already quote (most messages here embed their cause), anyhow's way:
/// `Caused by:`, then one indented line each, numbered when there are several.
fn write_causes(
    f: &mut std::fmt::Formatter<'_>,
    source: Option<&(dyn std::error::Error + 'static)>,
    mut shown: String,
) -> std::fmt::Result {
    let mut causes = Vec::new();
    for cause in std::iter::successors(source, |e| e.source()) {
        let text = cause.to_string();
        if !shown.contains(&text) {
            shown.push_str(&text);
            causes.push(text);
        }
    }
    match causes.as_slice() {
        [] => Ok(()),
        [one] => write!(f, "\n\nCaused by:\n    {one}"),
        many => {
            f.write_str("\n\nCaused by:")?;
            many.iter().enumerate().try_for_each(|(i, c)| write!(f, "\n    {i}: {c}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message does not quote its cause, as other crates' may.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Outer(&'static str, #[source] Option<Box<Outer>>);

    struct Chain(Outer);

    impl std::fmt::Debug for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write_causes(f, std::error::Error::source(&self.0), self.0.to_string())
        }
    }

    #[test]
    fn causes_not_quoted_are_listed_once_each() {
        let leaf = Outer("EPERM", None);
        let mid = Outer("opening the map", Some(Box::new(leaf)));
        let one = Chain(Outer("loading", Some(Box::new(Outer("EPERM", None)))));
        assert_eq!(format!("{one:?}"), "\n\nCaused by:\n    EPERM");
        let two = Chain(Outer("loading", Some(Box::new(mid))));
        assert_eq!(format!("{two:?}"), "\n\nCaused by:\n    0: opening the map\n    1: EPERM");
        let quoted = Chain(Outer("loading: EPERM", Some(Box::new(Outer("EPERM", None)))));
        assert_eq!(format!("{quoted:?}"), "", "a cause the message quotes is not repeated");
    }

    #[test]
    fn debug_is_the_message_and_alternate_debug_the_variant() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = Error::Pin(PinError::Io { op: "reading", path: "/sys/fs/bpf/x".into(), source: io });
        assert_eq!(format!("{err:?}"), err.to_string(), "the io error is in the message already");
        assert!(format!("{err:?}").starts_with("reading /sys/fs/bpf/x failed: "), "{err:?}");
        assert!(format!("{err:#?}").starts_with("Pin(\n    PinError: reading /sys/fs/bpf/x failed"), "{err:#?}");
        let sys = Error::Sys { call: "setns", errno: Errno::EPERM };
        assert_eq!(format!("{sys:?}"), "setns failed: EPERM: Operation not permitted");
        assert!(format!("{sys:#?}").starts_with("Sys {"), "{sys:#?}");
    }

    /// What `fn main() -> Result<(), Box<dyn std::error::Error>>` prints of
    /// an area's error is its message (it printed `OutOfRange { value: 1048576 }`).
    #[test]
    fn every_areas_error_debugs_as_its_message() {
        let label = crate::domain::label::Label::new(1 << 20).unwrap_err();
        assert_eq!(format!("{label:?}"), label.to_string());
        let boxed: Box<dyn std::error::Error> = Box::new(label.clone());
        assert!(format!("{boxed:?}").starts_with("label 1048576 is out of range"), "{boxed:?}");
        assert!(format!("{label:#?}").starts_with("LabelError: label 1048576"), "{label:#?}");
        let route = RouteError::ReadOnly;
        assert_eq!(format!("{route:?}"), route.to_string());
        let load = LoadError::Config("no");
        assert_eq!(format!("{load:?}"), load.to_string());
    }
}
