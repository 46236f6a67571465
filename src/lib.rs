//! Steer a Linux host's traffic into SR-MPLS / SR-TE paths: an XDP program
//! pushes MPLS label stacks chosen by longest-prefix match on the destination,
//! and this crate is its typed control surface.
//!
//! The topology is the "router on a stick": the router hands the host packets
//! (for instance everything it would send toward a destination), the host's
//! XDP program pushes the label stack for the destination, swaps the MACs and
//! sends the frame straight back (XDP_TX); the router then forwards on the top
//! label (a prefix SID, an adjacency SID, or a binding SID it expands into an
//! SR policy).
//!
//! The examples marked "not run" are compiled by the doctests but not run:
//! they need root (CAP_BPF, CAP_NET_ADMIN) and a network interface, which a
//! doctest does not get. The crate's own tests run the same calls as root in
//! network namespaces (`tests/`, the `testing` feature).
//!
//! # A tour
//!
//! ## Attach
//!
//! [`Encapsulator::builder`] loads the dataplane; `attach` puts it on an
//! interface's XDP hook ([`XdpMode::Auto`]: native, or generic where the
//! driver has no native XDP or, on a veth, the peer could not receive the
//! frames sent back; the log says which and why).
//! `load` programs it without attaching: routes can be set before any packet
//! sees them. Dropping the encapsulator detaches it; the attachment is a BPF
//! link, so a process that dies leaves nothing attached.
//!
//! ```no_run
//! // Not run: needs root and an interface named eth1.
//! use lnetd_host_encap::{Encapsulator, encap::MtuPolicy, encap::TtlMode, XdpMode};
//!
//! let enc = Encapsulator::builder()
//!     .ttl_mode(TtlMode::Copy) // the IP TTL into every label: traceroute shows the hop
//!     .mtu_policy(MtuPolicy::Drop) // a packet too big once labelled is dropped
//!     .attach("eth1", XdpMode::Auto)?;
//! if let Some(attachment) = enc.attachment() {
//!     println!("attached in {} mode", attachment.mode);
//! }
//! # Ok::<(), lnetd_host_encap::Error>(())
//! ```
//!
//! ## Routes
//!
//! A [`Route`] maps a prefix (no host bits) to a [`LabelStack`], top label
//! first, or to a [`Policy`]; the longest prefix matching a packet's
//! destination wins. Labels, stacks and policies are checked when they are
//! built, so a route's labels are valid; its prefix (an `IpNetwork`, which
//! keeps host bits) is checked where it enters a table (`set_route`, `apply`),
//! or up front by `routes::prefix::parse`:
//!
//! ```
//! use lnetd_host_encap::{LabelStack, Route, labels::TrafficClass};
//!
//! let stack: LabelStack = "16001/16002/24005".parse()?;
//! let route = Route::new("198.51.100.0/24".parse()?, stack).with_tc(TrafficClass::new(5)?);
//! assert_eq!(route.prefix.to_string(), "198.51.100.0/24");
//! assert_eq!(route.policy.to_string(), "16001/16002/24005");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each `set_*` call replaces one prefix atomically; [`Encapsulator::routes`]
//! lists what is in force:
//!
//! ```no_run
//! // Not run: needs root (it loads the dataplane).
//! use lnetd_host_encap::{Encapsulator, Label, Route, Table};
//!
//! let enc = Encapsulator::builder().load()?;
//! // The proof of concept's static binding SID, as an ordinary default route.
//! enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse()?, Label::new(1_000_000)?.into()))?;
//! // A specific prefix through an explicit two-segment path.
//! enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse()?, "16001/16002".parse()?))?;
//! enc.set_route(Table::Main, &Route::new("2001:db8::/32".parse()?, "16003".parse()?).with_tc_from_dscp())?;
//! for route in enc.routes(Table::Main)? {
//!     println!("{route}");
//! }
//! enc.remove(Table::Main, "198.51.100.0/24".parse()?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Policies
//!
//! A [`Policy`] holds 1 to 8 weighted segment lists (RFC 9256); each flow
//! takes one list, chosen by a flow hash in proportion to the weights. The
//! text form is the one the command and the desired-state files use:
//!
//! ```
//! use lnetd_host_encap::{labels::EntropyLabel, Policy, labels::SegmentList};
//!
//! // The proof of concept's 70/30 policy.
//! let policy: Policy = "16001/16002@7,16003/16004@3".parse()?;
//! assert_eq!(policy.lists().len(), 2);
//! // The same, typed, with an entropy label under the first two labels (RFC 6790).
//! let typed = Policy::new(
//!     vec![
//!         SegmentList { stack: "16001/16002".parse()?, weight: 7 },
//!         SegmentList { stack: "16003/16004".parse()?, weight: 3 },
//!     ],
//!     Some(EntropyLabel::After(2)),
//! )?;
//! assert_eq!(typed, policy.with_entropy_label(Some(EntropyLabel::After(2)))?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Encapsulator::set_route`] with a [`Route::with_policy`] steers a
//! prefix into it: `enc.set_route(Table::Main, &Route::with_policy(prefix, policy))`.
//!
//! ## Apply
//!
//! A controller usually says the whole state at once: a [`DesiredState`]
//! (TOML or JSON, unknown keys refused) is validated as a whole, then
//! [`Encapsulator::apply`] makes every table equal to it with the fewest map
//! operations, in an order where no packet meets a route that is neither old
//! nor new. A refused entry, or a set larger than the tables, changes nothing.
//!
//! ```
//! use lnetd_host_encap::DesiredState;
//!
//! let desired = DesiredState::from_toml(
//!     r#"
//!     [[routes]]
//!     prefix = "0.0.0.0/0"
//!     policy = "1000000"
//!     [[routes]]
//!     prefix = "198.51.100.0/24"
//!     policy = "16001/16002@7,16003@3"
//!     tc = "dscp"
//!     "#,
//! )?;
//! // Every check that does not need the kernel, before touching it.
//! let valid = desired.validate()?;
//! assert_eq!(valid.routes().len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```no_run
//! // Not run: needs root and an interface named eth1.
//! # use lnetd_host_encap::{ApplyOptions, DesiredState, Encapsulator};
//! # let desired = DesiredState::from_toml("")?;
//! let enc = Encapsulator::open("eth1")?;
//! println!("would: {}", enc.apply(&desired, ApplyOptions::default().dry_run(true))?);
//! let report = enc.apply(&desired, ApplyOptions::default())?;
//! println!("{} added, {} replaced, {} removed", report.added.len(), report.replaced.len(), report.removed.len());
//! // What is in force, in the same shape (to save, or to diff against).
//! let _now: DesiredState = enc.desired_state();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Counters
//!
//! [`Encapsulator::stats`] sums the per-CPU counters: every packet the program
//! sees moves exactly one, by its length as it arrived ([`Stats`] says which
//! means what). Only the driver knows whether a frame it was handed went out:
//! `tx_errors` is the interface's own count of the XDP_TX frames it could not
//! send, beside `labelled`. Each route also counts what it labelled, per
//! segment list; [`prometheus`](counters::prometheus) renders both as exposition text.
//!
//! ```no_run
//! // Not run: needs root and a dataplane pinned on eth1.
//! use lnetd_host_encap::{counters::prometheus, Encapsulator, Table};
//!
//! let enc = Encapsulator::open("eth1")?;
//! let before = enc.stats()?;
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! let last_second = enc.stats()?.since(&before);
//! println!("{last_second}");
//! if let Some(lost) = last_second.tx_errors.filter(|&n| n > 0) {
//!     eprintln!("the driver failed to send {lost} labelled frames");
//! }
//! if let Some(c) = enc.route_counters(Table::Main, "198.51.100.0/24".parse()?)? {
//!     println!("{} labelled, per list {:?}", c.labelled, c.lists);
//! }
//! let text = prometheus("eth1", &enc.stats()?, &enc.counted_routes()?);
//! # let _ = text;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Explain
//!
//! [`Encapsulator::explain`] answers "what would happen to this packet", like
//! `ip route get` for labels: the real program runs on a frame built from a
//! [`Probe`](diagnostics::Probe), in a copy with counters of its own, so probes never move
//! [`Encapsulator::stats`] or the route counters.
//!
//! ```
//! use lnetd_host_encap::diagnostics::Probe;
//!
//! let probe = Probe::tcp("198.51.100.7".parse()?).from("10.0.0.1".parse()?).dport(443).dscp(46);
//! assert_eq!((probe.dport, probe.dscp), (443, 46));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```no_run
//! // Not run: needs root and a dataplane pinned on eth1.
//! # use lnetd_host_encap::{Encapsulator, diagnostics::Probe};
//! # let probe = Probe::tcp("198.51.100.7".parse()?);
//! let enc = Encapsulator::open("eth1")?;
//! let answer = enc.explain(&probe)?;
//! println!("{answer}"); // the verdict, the route and list chosen, the stack pushed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Bad input
//!
//! Every refused input is a typed error whose message quotes what was given
//! and says what to do, and a refused request changes nothing (see
//! [Errors](#errors) for reporting them):
//!
//! ```
//! use lnetd_host_encap::{routes::prefix, DesiredState, Label, LabelStack, Policy};
//!
//! assert!(Label::new(1_048_576).is_err()); // labels are 20 bits
//! assert!(Label::new(7).is_err()); // special purpose (ELI): not a segment
//! let err = prefix::parse("10.0.0.1/24").unwrap_err();
//! assert!(err.to_string().contains("did you mean 10.0.0.0/24?"), "{err}");
//! let err = "16001//16002".parse::<LabelStack>().unwrap_err();
//! assert!(err.to_string().contains("\"16001//16002\""), "the input is quoted: {err}");
//! assert!("16001@0".parse::<Policy>().is_err()); // a weight of 0
//! // A desired state is refused whole, naming the entry.
//! let desired = DesiredState::from_toml("[[routes]]\nprefix = \"10.0.0.1/8\"\npolicy = \"16001\"")?;
//! let err = desired.validate().unwrap_err();
//! assert!(err.to_string().contains("routes[0]"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Pinning: a dataplane that outlives its process
//!
//! `.pinned()` pins the maps and the link under bpffs
//! (`/sys/fs/bpf/lnetd-host-encap/...`, see [`PinRoots`](pins::PinRoots)) and keeps the
//! routes' bookkeeping beside it, so forwarding goes on after the process
//! exits. [`Encapsulator::open`] adopts it later (moving it to this build's
//! program with one atomic link update: an upgrade loses no packet and no
//! counter); [`Encapsulator::detach`] removes the program and the pins.
//!
//! ```no_run
//! // Not run: needs root, bpffs and an interface named eth1.
//! use lnetd_host_encap::{encap::AdoptOptions, Encapsulator, Label, XdpMode, Table, Route};
//!
//! // Process 1: attach, pin, program, exit.
//! let enc = Encapsulator::builder().pinned().attach("eth1", XdpMode::Auto)?;
//! enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse()?, Label::new(1_000_000)?.into()))?;
//! drop(enc); // a pinned dataplane stays attached
//!
//! // A reader beside the owner (a monitoring tool): changes are refused.
//! let reader = (AdoptOptions { read_only: true, ..AdoptOptions::default() }).open("eth1")?;
//! println!("{}", reader.stats()?);
//!
//! // Process 2 (later, or after process 1 was killed): adopt it.
//! let enc = Encapsulator::open("eth1")?;
//! assert!(enc.diagnostics().verify()?.is_empty(), "the kernel's tables match the bookkeeping");
//! enc.detach()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cargo features
//!
//! None is on by default: the library alone needs neither clang nor a code
//! generator at build time (the compiled dataplane ships in the crate; see
//! docs/building.md in the repository).
//!
//! | feature | what it adds |
//! |---|---|
//! | `watch` | `encap::AddressWatcher`: follows the host's addresses (netlink) |
//! | `cli` | the `lnetd-host-encap` command |
//! | `agent` | the gRPC agent and its protocols (`agent` module); implies `cli` and `watch` |
//! | `bgp` | SR policies learned from BGP through GoBGP (`bgp` module); implies `agent` |
//! | `testing` | veth labs in namespaces, capture, traffic, helper XDP programs (`lab`, `testing`) |
//! | `build-bpf` | compiles the dataplane from `src/bpf/*.bpf.c` with clang instead of using the prebuilt objects |
//!
//! # Logging
//!
//! The crate never prints: it returns errors and logs through the `log`
//! facade (libbpf's own messages included, under the target `libbpf`).
//!
//! # Errors
//!
//! Every fallible call returns a typed error of its area ([`LabelError`](errors::LabelError),
//! [`PolicyError`](errors::PolicyError), [`PrefixError`](errors::PrefixError), [`RouteError`](errors::RouteError), [`AttachError`](errors::AttachError), ...),
//! each convertible into [`enum@Error`]. The enums are `#[non_exhaustive]`:
//! match with a wildcard arm. Messages say what was wrong, quoting the text
//! given, and what to do. `fn main() -> Result<(), Error>` prints the message
//! (`Error`'s `Debug` is the message and its causes), and the errors work with
//! any reporter of `std::error::Error` chains, `anyhow` for instance:
//!
//! ```
//! use anyhow::Context;
//! use lnetd_host_encap::{Error, errors::LabelError, LabelStack, Policy, Route, errors::RouteError};
//!
//! fn route_from_config(prefix: &str, stack: &str) -> anyhow::Result<Route> {
//!     let prefix = lnetd_host_encap::routes::prefix::parse(prefix)?;
//!     let stack: LabelStack = stack.parse().with_context(|| format!("the route for {prefix}"))?;
//!     Ok(Route::new(prefix, stack))
//! }
//!
//! let err = route_from_config("198.51.100.0/24", "16001//16002").unwrap_err();
//! // `{:#}` prints the chain on one line; `{:?}` on several, as `main` does.
//! assert_eq!(
//!     format!("{err:#}"),
//!     "the route for 198.51.100.0/24: \"16001//16002\" is not a label stack: label 2 of 3 is empty \
//!      (expected labels separated by `/`, e.g. `16001/16002`)"
//! );
//! // A label error stays a label error under the context.
//! assert!(matches!(err.downcast_ref::<LabelError>(), Some(LabelError::StackParse { position: 2, .. })));
//!
//! // Through this crate's `Error`, it is one path: `Error::Route(RouteError::Label(..))`.
//! fn checked(text: &str) -> Result<Policy, Error> {
//!     Ok(text.parse::<Policy>()?)
//! }
//! let err = anyhow::Error::from(checked("16001@7,16002@0").unwrap_err()).context("policy of 198.51.100.0/24");
//! // `{err:?}` prints "policy of 198.51.100.0/24", then "Caused by:" and this:
//! let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
//! assert_eq!(chain, ["policy of 198.51.100.0/24", "segment list 1 has weight 0; weights are 1..=65535"]);
//! assert!(matches!(err.downcast_ref::<Error>(), Some(Error::Route(RouteError::Policy(_)))));
//! ```
//!
//! A match without a wildcard arm does not compile, so a new variant never
//! breaks a dependent:
//!
//! ```compile_fail,E0004
//! use lnetd_host_encap::errors::PrefixError;
//! fn what(e: &PrefixError) -> &'static str {
//!     match e {
//!         PrefixError::HostBitsSet { .. } => "host bits",
//!         PrefixError::Parse { .. } => "not a prefix",
//!     }
//! }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod abi;
#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "bgp")]
pub mod bgp;
mod counted_serde;
pub mod counters;
mod dataplane;
pub mod decap;
mod decapsulator;
pub mod desired;
pub mod diagnostics;
mod display;
mod domain;
pub mod encap;
mod encapsulator;
mod error;
pub mod errors;
mod explain;
mod fib;
mod handles;
pub mod labels;
mod metrics;
pub mod pins;
mod rib;
pub mod routes;
mod stats;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "watch")]
mod watch;

// The root: the types nearly every program names. Everything else is in the
// module of its concept (see docs/api.md for the map and the counts).
pub use desired::{ApplyOptions, DesiredState};
pub use encap::{Encapsulator, XdpMode};
pub use error::Error;
pub use ipnetwork::IpNetwork;
pub use labels::{Label, LabelStack, Policy};
pub use routes::{Route, Table};
pub use stats::Stats;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples of the guides in docs/, compiled as doctests.
#[cfg(doctest)]
pub mod docs_doctests {
    #[doc = include_str!("../docs/design.md")]
    pub struct Design;
    #[doc = include_str!("../docs/host-mode.md")]
    pub struct HostMode;
    #[doc = include_str!("../docs/agent.md")]
    pub struct Agent;
    #[doc = include_str!("../docs/bgp.md")]
    pub struct Bgp;
}
