//! The agent's configuration file (`agent --config FILE`, TOML): the
//! interface, the attach settings, the listeners, BGP, and the static routes
//! the host carries after a reboot. Keys are the command's flag names with
//! `_` for `-` (`[bgp]` drops the flags' `bgp-` prefix); an unknown key is
//! refused with its name and the file ([`ConfigError::UnknownKey`]), so a
//! typo never silently changes what the host does.
//!
//! ```
//! use lnetd_host_encap::agent::config::AgentFile;
//! let file = AgentFile::from_toml_text(std::path::Path::new("eth1.toml"), r#"
//! interface = "eth1"
//! [listeners]
//! write_group = "lnetd-host-encap"
//! [[routes]]
//! prefix = "0.0.0.0/0"
//! policy = "1000000"
//! "#)?;
//! assert_eq!(file.static_routes()?.map(|d| d.routes.len()), Some(1));
//! # Ok::<(), lnetd_host_encap::agent::config::ConfigError>(())
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::domain::desired::{DesiredFormat, DesiredRoute, DesiredSource, DesiredState};
#[cfg(feature = "bgp")]
use crate::domain::policy::NoLivePath;

/// The keys of each section, as the file spells them (checked before the
/// typed parse, so the refusal names the key and its section).
const TOP: &[&str] =
    &["interface", "attach", "listeners", "bgp", "sbfd", "routes", "sources", "dscp_map", "routes_file"];
const ATTACH: &[&str] = &[
    "hook",
    "allow_tso",
    "label_on_link",
    "mode",
    "ttl",
    "mtu_policy",
    "max_routes_v4",
    "max_routes_v6",
    "max_policies",
    "max_counted_routes",
    "lookup",
    "max_route_values",
    "dir_groups",
    "route_cache",
    "route_cache_min_routes",
];
const LISTENERS: &[&str] = &[
    "write_group",
    "read_access",
    "listen",
    "insecure_local_tcp",
    "metrics",
    "metrics_public",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "verify_interval",
    "max_apply_bytes",
];
const BGP: &[&str] = &["api", "session_down", "stale_time", "router_id", "precedence"];
const SBFD: &[&str] = &["interval_ms", "multiplier", "hold_down_ms", "reflector", "router_mac", "no_live_path"];
const ROUTE: &[&str] = &["prefix", "policy", "tc", "table", "entropy_label", "policy_name"];
const SOURCE: &[&str] = &["prefix", "table"];

/// The configuration file was refused; the agent starts (or reloads) nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or a value of the wrong type.
    #[error("{path}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's words (line and column included).
        reason: String,
    },
    /// A key the agent does not know (a typo, or a flag that is not a setting).
    #[error("{path}: unknown key `{key}`: the keys are the flags' names with `_` (docs/operations.md lists them)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with its section: `listeners.wirte_group`, `routes[2].polcy`.
        key: String,
    },
    /// A value its setting refuses.
    #[error("{path}: {key} = {value:?}: {reason}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key, with its section.
        key: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// Routes both inline and in `routes_file`.
    #[error(
        "{path}: routes both inline ([[routes]], [[sources]], dscp_map) and in routes_file: keep one \
         (routes_file holds the `apply` format)"
    )]
    TwoRouteSources {
        /// The file.
        path: PathBuf,
    },
    /// The routes (inline or in `routes_file`) were refused.
    #[error("{path}: the static routes: {source}")]
    Routes {
        /// The file that holds them.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::domain::desired::DesiredFileError,
    },
}

/// `[attach]`: how the agent attaches a dataplane when none is pinned (the
/// `attach` command's flags). Changing them needs a restart, and takes effect
/// only on a fresh dataplane (after `detach` or a reboot).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachSettings {
    /// `xdp` or `egress`.
    pub hook: Option<String>,
    /// With `hook = "egress"`: attach even though the NIC segments TCP itself.
    pub allow_tso: Option<bool>,
    /// With `hook = "egress"`: label what the kernel sends to an on-link
    /// neighbour too (by default it leaves unlabelled).
    pub label_on_link: Option<bool>,
    /// `auto`, `native` or `generic`.
    pub mode: Option<String>,
    /// `copy` or 1..=255.
    pub ttl: Option<String>,
    /// `drop` or `pass`.
    pub mtu_policy: Option<String>,
    /// Capacity of the IPv4 route table.
    pub max_routes_v4: Option<u32>,
    /// Capacity of the IPv6 route table.
    pub max_routes_v6: Option<u32>,
    /// Capacity of the policy table.
    pub max_policies: Option<u32>,
    /// Routes and segment lists that get counters.
    pub max_counted_routes: Option<u32>,
    /// `dir24-8` or `lpm`.
    pub lookup: Option<String>,
    /// DIR-24-8: distinct IPv4 route values.
    pub max_route_values: Option<u32>,
    /// DIR-24-8: /24s that may hold longer prefixes.
    pub dir_groups: Option<u32>,
    /// Entries of the route cache (0: none).
    pub route_cache: Option<u32>,
    /// Main-table routes a family needs before its lookups use the cache.
    pub route_cache_min_routes: Option<u32>,
}

/// `[listeners]`: where the agent serves and who may use it (the agent's
/// listener flags). Changing them needs a restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// The group whose members may change routes through the local socket.
    pub write_group: Option<String>,
    /// `all` or `none`: what other local users may do on the local socket.
    pub read_access: Option<String>,
    /// gRPC on TCP at this address (TLS, or plaintext loopback with `insecure_local_tcp`).
    pub listen: Option<SocketAddr>,
    /// Plaintext gRPC on loopback TCP: any local user can then program the host.
    pub insecure_local_tcp: Option<bool>,
    /// Prometheus metrics at `http://ADDR/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Allows `metrics` off loopback.
    pub metrics_public: Option<bool>,
    /// The TLS server certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Its key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA client certificates must be signed by (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds between background comparisons of the kernel with the RIB (0: none).
    pub verify_interval: Option<u64>,
    /// The most one `ApplyStream` may send, in bytes (0: no limit).
    pub max_apply_bytes: Option<u64>,
}

/// `[bgp]`: the `--bgp-*` flags. Changing them needs a restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSettings {
    /// GoBGP's gRPC API, `HOST:PORT` (`--bgp-api`).
    pub api: Option<String>,
    /// `keep` or `withdraw` (`--bgp-session-down`).
    pub session_down: Option<String>,
    /// Seconds a returning session has to teach its routes again (`--bgp-stale-time`).
    pub stale_time: Option<f64>,
    /// This host's BGP identifier (`--bgp-router-id`).
    pub router_id: Option<Ipv4Addr>,
    /// Which origin wins a prefix, highest first, e.g. `agent,static,bgp`
    /// (`--bgp-precedence`).
    pub precedence: Option<String>,
}

/// `[sbfd]`: the `--sbfd-*` flags (segment-list liveness, docs/liveness.md),
/// the section name standing for their `sbfd-` prefix. Needs `[bgp] api`.
/// Changing them needs a restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbfdSettings {
    /// Probe every segment list every this many milliseconds (`--sbfd-interval-ms`);
    /// S-BFD is off without it.
    pub interval_ms: Option<u64>,
    /// Detection multiplier (`--sbfd-multiplier`, default 3).
    pub multiplier: Option<u8>,
    /// Hold-down of a list that answers again (`--sbfd-hold-down-ms`, default 5000).
    pub hold_down_ms: Option<u64>,
    /// Reflector discriminators, `ENDPOINT=DISCRIMINATOR` each (`--sbfd-reflector`).
    pub reflector: Option<Vec<String>>,
    /// The router's MAC (`--sbfd-router-mac`).
    pub router_mac: Option<String>,
    /// `unlabelled` or `drop`: what the packets of the routes steered into
    /// a policy with no live candidate path do (`--sbfd-no-live-path`,
    /// default unlabelled).
    pub no_live_path: Option<String>,
}

/// The whole file, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The file it was read from (relative `routes_file` paths start at its directory).
    #[serde(skip)]
    pub path: PathBuf,
    /// The interface; `-i` on the command line must agree when both are given.
    pub interface: Option<String>,
    /// How to attach a fresh dataplane.
    #[serde(default)]
    pub attach: AttachSettings,
    /// Where to serve.
    #[serde(default)]
    pub listeners: ListenerSettings,
    /// BGP.
    #[serde(default)]
    pub bgp: BgpSettings,
    /// S-BFD.
    #[serde(default)]
    pub sbfd: SbfdSettings,
    /// Static routes, in the `apply` format.
    pub routes: Option<Vec<DesiredRoute>>,
    /// Source prefixes selecting alternate tables, in the `apply` format.
    pub sources: Option<Vec<DesiredSource>>,
    /// The DSCP -> TC table, in the `apply` format.
    pub dscp_map: Option<Vec<u8>>,
    /// Or: a file in the `apply` format (TOML or JSON by extension) holding them.
    pub routes_file: Option<PathBuf>,
}

impl AgentFile {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`]: unreadable, not TOML, an unknown key.
    pub fn read(path: &Path) -> Result<AgentFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        AgentFile::from_toml_text(path, &text)
    }

    /// Parses `text`, the content of `path`.
    ///
    /// # Errors
    /// [`ConfigError`]: not TOML, an unknown key, a value of the wrong type.
    pub fn from_toml_text(path: &Path, text: &str) -> Result<AgentFile, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax { path: path.into(), reason: e.to_string() };
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        if let Some(key) = unknown_key(&table) {
            return Err(ConfigError::UnknownKey { path: path.into(), key });
        }
        let mut file: AgentFile = toml::from_str(text).map_err(syntax)?;
        file.path = path.to_owned();
        Ok(file)
    }

    /// An `[attach]` option of one hook given with the other is refused,
    /// as the `attach` command refuses its flags: ignored, it would let an
    /// operator believe the dataplane does what it does not. Part of
    /// [`AgentFile::check`], so an agent that adopts a pinned dataplane
    /// (and does not attach) still says so.
    fn attach_options_fit_the_hook(&self) -> Result<(), ConfigError> {
        let a = &self.attach;
        let refused = |key: &str, value: String, reason: &str| ConfigError::Value {
            path: self.path.clone(),
            key: key.into(),
            value,
            reason: reason.into(),
        };
        match a.hook.as_deref() {
            None | Some("xdp") => {
                if a.label_on_link == Some(true) {
                    return Err(refused(
                        "attach.label_on_link",
                        "true".into(),
                        "for hook = \"egress\" (the kernel's route says what is on-link); hook = \"xdp\" labels \
                         by the tables alone: remove it or set hook = \"egress\"",
                    ));
                }
                if a.allow_tso == Some(true) {
                    return Err(refused(
                        "attach.allow_tso",
                        "true".into(),
                        "for hook = \"egress\" (TCP the NIC segments after the label); hook = \"xdp\" sees \
                         frames already on the wire: remove it or set hook = \"egress\"",
                    ));
                }
                Ok(())
            }
            Some("egress") => match &a.mode {
                Some(mode) => Err(refused(
                    "attach.mode",
                    mode.clone(),
                    "for hook = \"xdp\" (an XDP attachment mode); hook = \"egress\" attaches to tcx: remove it",
                )),
                None => Ok(()),
            },
            Some(other) => Err(refused("attach.hook", other.into(), "xdp or egress")),
        }
    }

    /// Whether the file says anything about static routes (otherwise the
    /// agent leaves the routes it finds alone).
    pub fn has_static_routes(&self) -> bool {
        self.routes.is_some() || self.sources.is_some() || self.dscp_map.is_some() || self.routes_file.is_some()
    }

    /// The static routes: inline, or read from `routes_file` (with the
    /// `apply` command's guards: an empty or route-less file is refused;
    /// `routes = []` says "none"). `None` when the file names none.
    ///
    /// # Errors
    /// [`ConfigError`]: both inline and `routes_file`, the routes file
    /// unreadable or refused.
    pub fn static_routes(&self) -> Result<Option<DesiredState>, ConfigError> {
        let inline = self.routes.is_some() || self.sources.is_some() || self.dscp_map.is_some();
        let Some(file) = &self.routes_file else {
            if !inline {
                return Ok(None);
            }
            let desired = DesiredState {
                routes: self.routes.clone().unwrap_or_default(),
                sources: self.sources.clone().unwrap_or_default(),
                dscp_map: self.dscp_map.clone(),
            };
            return Ok(Some(desired));
        };
        if inline {
            return Err(ConfigError::TwoRouteSources { path: self.path.clone() });
        }
        let file = match self.path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.clone(),
        };
        let format = match file.extension().and_then(|e| e.to_str()) {
            Some("json") => DesiredFormat::Json,
            Some("toml") => DesiredFormat::Toml,
            _ => {
                return Err(ConfigError::Value {
                    path: self.path.clone(),
                    key: "routes_file".into(),
                    value: file.display().to_string(),
                    reason: "name it .toml or .json (the `apply` format)".into(),
                })
            }
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        DesiredState::from_file_text(&text, format, false)
            .map(Some)
            .map_err(|source| ConfigError::Routes { path: file, source })
    }

    /// A setting's value parsed by its type, or the error naming the key.
    ///
    /// # Errors
    /// [`ConfigError::Value`].
    pub fn value<T: FromStr>(&self, key: &str, value: Option<&str>) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        value
            .map(|v| {
                v.parse().map_err(|e: T::Err| ConfigError::Value {
                    path: self.path.clone(),
                    key: key.into(),
                    value: v.into(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// `[sbfd]` checked and typed: each value refused names its key.
    ///
    /// # Errors
    /// [`ConfigError::Value`]: an interval out of 1..=60000, a multiplier
    /// of 0, a reflector that is not `ENDPOINT=DISCRIMINATOR`, a MAC that
    /// is not `xx:xx:xx:xx:xx:xx`, a `no_live_path` that is neither
    /// `unlabelled` nor `drop`.
    #[cfg(feature = "bgp")]
    pub fn sbfd(&self) -> Result<SbfdValues, ConfigError> {
        let s = &self.sbfd;
        let refuse = |key: &str, value: String, reason: &str| ConfigError::Value {
            path: self.path.clone(),
            key: format!("sbfd.{key}"),
            value,
            reason: reason.into(),
        };
        if let Some(ms) = s.interval_ms.filter(|ms| !(1..=60_000).contains(ms)) {
            return Err(refuse("interval_ms", ms.to_string(), "1 to 60000 milliseconds"));
        }
        if s.multiplier == Some(0) {
            return Err(refuse("multiplier", "0".into(), "1 to 255"));
        }
        let reflectors = s
            .reflector
            .iter()
            .flatten()
            .map(|r| {
                r.parse::<crate::bgp::sbfd::Reflector>().map_err(|e| refuse("reflector", r.clone(), &e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let router_mac = s
            .router_mac
            .as_deref()
            .map(|m| {
                crate::bgp::sbfd::neighbour::parse_mac(m)
                    .ok_or_else(|| refuse("router_mac", m.into(), "a unicast MAC such as 02:00:00:00:00:01"))
            })
            .transpose()?;
        let no_live_path = s
            .no_live_path
            .as_deref()
            .map(|t| t.parse::<NoLivePath>().map_err(|e| refuse("no_live_path", t.into(), &e.to_string())))
            .transpose()?;
        Ok(SbfdValues {
            interval_ms: s.interval_ms,
            multiplier: s.multiplier,
            hold_down_ms: s.hold_down_ms,
            reflectors,
            router_mac,
            no_live_path,
        })
    }

    /// Checks every setting's value as a start reads it (`[attach]`,
    /// `[listeners]`, `[bgp]`, `[sbfd]`), with the same refusal: a reload
    /// calls it so that a file the next start would refuse is refused now,
    /// while the agent still runs, rather than reported as "changed, not
    /// applied" and found at the restart, which would then leave no agent.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming the first bad key and its value.
    pub fn check(&self) -> Result<(), ConfigError> {
        use crate::encap::{Ipv4Lookup, MtuPolicy, TtlMode, XdpMode};
        let a = &self.attach;
        self.value::<TtlMode>("attach.ttl", a.ttl.as_deref())?;
        self.value::<MtuPolicy>("attach.mtu_policy", a.mtu_policy.as_deref())?;
        self.value::<Ipv4Lookup>("attach.lookup", a.lookup.as_deref())?;
        self.value::<XdpMode>("attach.mode", a.mode.as_deref())?;
        self.attach_options_fit_the_hook()?;
        self.value::<super::ReadAccess>("listeners.read_access", self.listeners.read_access.as_deref())?;
        #[cfg(feature = "bgp")]
        {
            let b = &self.bgp;
            self.value::<crate::bgp::SessionDown>("bgp.session_down", b.session_down.as_deref())?;
            self.value::<crate::bgp::Precedence>("bgp.precedence", b.precedence.as_deref())?;
            self.sbfd()?;
        }
        Ok(())
    }

    /// The settings that differ from `other`'s and cannot change while the
    /// agent runs (the interface, `[attach]`, `[listeners]`, `[bgp]`, `[sbfd]`): a
    /// reload reports them instead of applying them.
    pub fn restart_needed(&self, other: &AgentFile) -> Vec<String> {
        let mut changed = Vec::new();
        if self.interface != other.interface {
            changed.push("interface".to_owned());
        }
        let sections: [(&str, bool); 4] = [
            ("attach", self.attach != other.attach),
            ("listeners", self.listeners != other.listeners),
            ("bgp", self.bgp != other.bgp),
            ("sbfd", self.sbfd != other.sbfd),
        ];
        changed.extend(sections.iter().filter(|(_, differs)| *differs).map(|(name, _)| format!("[{name}]")));
        changed
    }
}

/// `[sbfd]` as [`AgentFile::sbfd`] typed it.
#[cfg(feature = "bgp")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbfdValues {
    /// `interval_ms`, 1..=60000.
    pub interval_ms: Option<u64>,
    /// `multiplier`, 1..=255.
    pub multiplier: Option<u8>,
    /// `hold_down_ms`.
    pub hold_down_ms: Option<u64>,
    /// `reflector`, parsed.
    pub reflectors: Vec<crate::bgp::sbfd::Reflector>,
    /// `router_mac`, parsed.
    pub router_mac: Option<[u8; 6]>,
    /// `no_live_path`, parsed.
    pub no_live_path: Option<NoLivePath>,
}

/// The first key of `table` (or of its sections and route entries) the file
/// format does not have, spelled with its section.
fn unknown_key(table: &toml::Table) -> Option<String> {
    let stray = |t: &toml::Table, known: &[&str], prefix: &str| {
        t.keys().find(|k| !known.contains(&k.as_str())).map(|k| format!("{prefix}{k}"))
    };
    if let Some(k) = stray(table, TOP, "") {
        return Some(k);
    }
    for (section, known) in [("attach", ATTACH), ("listeners", LISTENERS), ("bgp", BGP), ("sbfd", SBFD)] {
        if let Some(toml::Value::Table(t)) = table.get(section) {
            if let Some(k) = stray(t, known, &format!("{section}.")) {
                return Some(k);
            }
        }
    }
    for (list, known) in [("routes", ROUTE), ("sources", SOURCE)] {
        if let Some(toml::Value::Array(entries)) = table.get(list) {
            for (i, entry) in entries.iter().enumerate() {
                if let Some(k) = entry.as_table().and_then(|t| stray(t, known, &format!("{list}[{i}]."))) {
                    return Some(k);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../contrib/lnetd-host-encap.example.toml");

    #[test]
    fn the_example_file_parses_with_every_section() {
        let file = AgentFile::from_toml_text(Path::new("contrib/lnetd-host-encap.example.toml"), EXAMPLE).unwrap();
        assert_eq!(file.interface.as_deref(), Some("eth1"));
        assert!(file.attach != AttachSettings::default() && file.listeners != ListenerSettings::default());
        assert!(file.value::<crate::XdpMode>("attach.mode", file.attach.mode.as_deref()).unwrap().is_some());
        assert!(file.value::<crate::encap::TtlMode>("attach.ttl", file.attach.ttl.as_deref()).unwrap().is_some());
        assert!(file.value::<crate::encap::MtuPolicy>("attach.mtu_policy", file.attach.mtu_policy.as_deref()).is_ok());
        assert!(file.value::<crate::encap::Ipv4Lookup>("attach.lookup", file.attach.lookup.as_deref()).is_ok());
        let routes = file.static_routes().unwrap().expect("the example carries static routes");
        let valid = routes.validate().unwrap();
        assert!(valid.routes().len() >= 2 && !valid.sources().is_empty(), "{valid:?}");
    }

    #[test]
    fn an_attach_option_of_the_other_hook_is_refused_with_its_key() {
        let path = Path::new("/etc/lnetd-host-encap/eth1.toml");
        for (text, key, value) in [
            ("[attach]\nlabel_on_link = true", "attach.label_on_link", "true"),
            ("[attach]\nhook = \"xdp\"\nallow_tso = true", "attach.allow_tso", "true"),
            ("[attach]\nhook = \"egress\"\nmode = \"native\"", "attach.mode", "native"),
            ("[attach]\nhook = \"ingress\"", "attach.hook", "ingress"),
        ] {
            match AgentFile::from_toml_text(path, text).and_then(|f| f.check()) {
                Err(e @ ConfigError::Value { .. }) => {
                    let said = e.to_string();
                    assert!(said.contains(key) && said.contains(value) && said.contains("eth1.toml"), "{said}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        for text in [
            "[attach]\nhook = \"egress\"\nlabel_on_link = true\nallow_tso = true",
            "[attach]\nlabel_on_link = false\nallow_tso = false\nmode = \"native\"",
        ] {
            AgentFile::from_toml_text(path, text).and_then(|f| f.check()).unwrap();
        }
    }

    #[test]
    fn the_agents_limits_are_listener_settings() {
        let text = "routes = []\n[listeners]\nverify_interval = 0\nmax_apply_bytes = 1048576";
        let file = AgentFile::from_toml_text(Path::new("a.toml"), text).unwrap();
        assert_eq!((file.listeners.verify_interval, file.listeners.max_apply_bytes), (Some(0), Some(1 << 20)));
    }

    #[test]
    fn unknown_keys_are_named_with_their_section_and_file() {
        let path = Path::new("/etc/lnetd-host-encap/eth1.toml");
        for (text, key) in [
            ("interfce = \"eth1\"", "interfce"),
            ("[listeners]\nwirte_group = \"x\"", "listeners.wirte_group"),
            ("[attach]\nmax_routes = 1", "attach.max_routes"),
            ("[bgp]\nbgp_api = \"127.0.0.1:50052\"", "bgp.bgp_api"),
            ("[[routes]]\nprefix = \"10.0.0.0/8\"\npolcy = \"100\"", "routes[0].polcy"),
        ] {
            let e = AgentFile::from_toml_text(path, text).unwrap_err();
            assert!(matches!(&e, ConfigError::UnknownKey { key: k, .. } if k == key), "{text}: {e:?}");
            assert!(e.to_string().contains(path.to_str().unwrap()) && e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn routes_come_from_one_place_and_bad_values_name_their_key() {
        let path = Path::new("a.toml");
        let both = AgentFile::from_toml_text(path, "routes_file = \"r.toml\"\nroutes = []").unwrap();
        assert!(matches!(both.static_routes(), Err(ConfigError::TwoRouteSources { .. })));
        let none = AgentFile::from_toml_text(path, "interface = \"eth1\"").unwrap();
        assert!(!none.has_static_routes() && none.static_routes().unwrap().is_none());
        let empty = AgentFile::from_toml_text(path, "routes = []").unwrap();
        assert_eq!(empty.static_routes().unwrap().map(|d| d.routes.len()), Some(0));
        let bad = AgentFile::from_toml_text(path, "[attach]\nttl = \"sometimes\"").unwrap();
        let e = bad.value::<crate::encap::TtlMode>("attach.ttl", bad.attach.ttl.as_deref()).unwrap_err();
        assert!(e.to_string().contains("attach.ttl") && e.to_string().contains("sometimes"), "{e}");
        let wrong_type = AgentFile::from_toml_text(path, "[attach]\nmax_policies = \"many\"").unwrap_err();
        assert!(matches!(wrong_type, ConfigError::Syntax { .. }), "{wrong_type:?}");
    }

    #[test]
    fn settings_that_need_a_restart_are_named() {
        let path = Path::new("a.toml");
        let a = AgentFile::from_toml_text(
            path,
            "[listeners]\nwrite_group = \"a\"\n[[routes]]\nprefix = \"10.0.0.0/8\"\npolicy = \"100\"",
        )
        .unwrap();
        let b = AgentFile::from_toml_text(path, "routes = []\n[listeners]\nwrite_group = \"b\"").unwrap();
        assert_eq!(a.restart_needed(&b), vec!["[listeners]".to_owned()]);
        assert!(a.restart_needed(&a).is_empty());
        let c =
            AgentFile::from_toml_text(path, "routes = []\n[listeners]\nwrite_group = \"b\"\n[sbfd]\nmultiplier = 5")
                .unwrap();
        assert_eq!(b.restart_needed(&c), vec!["[sbfd]".to_owned()]);
    }

    /// The example with its commented `[bgp]` and `[sbfd]` sections turned on.
    fn example_with_liveness() -> String {
        let mut on = false;
        EXAMPLE
            .lines()
            .map(|l| {
                if l.starts_with("# [") {
                    on = true;
                    return l.trim_start_matches("# ").to_owned();
                }
                on &= l.starts_with("# ") && l.contains(" = ");
                if on {
                    l.trim_start_matches("# ").to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[cfg(feature = "bgp")]
    #[test]
    fn the_examples_sbfd_section_parses_into_the_flags_values() {
        let text = example_with_liveness();
        let file = AgentFile::from_toml_text(Path::new("example.toml"), &text).unwrap();
        assert_eq!(file.bgp.api.as_deref(), Some("127.0.0.1:50052"), "{text}");
        let s = file.sbfd().unwrap();
        assert_eq!((s.interval_ms, s.multiplier, s.hold_down_ms), (Some(10), Some(3), Some(5000)));
        let reflectors: Vec<(String, u32)> =
            s.reflectors.iter().map(|r| (r.endpoint.to_string(), r.discriminator)).collect();
        assert_eq!(reflectors, [("192.0.2.1".to_owned(), 3_221_225_985), ("2001:db8::1".to_owned(), 0xc000_0201)]);
        assert_eq!(s.router_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(s.no_live_path, Some(NoLivePath::Unlabelled));
        let drop = AgentFile::from_toml_text(Path::new("d.toml"), "[sbfd]\nno_live_path = \"drop\"").unwrap();
        assert_eq!(drop.sbfd().unwrap().no_live_path, Some(NoLivePath::Drop));
        // Commented out, the section is off.
        let off = AgentFile::from_toml_text(Path::new("example.toml"), EXAMPLE).unwrap();
        assert_eq!((off.sbfd.clone(), off.sbfd().unwrap()), (SbfdSettings::default(), SbfdValues::default()));
    }

    #[cfg(feature = "bgp")]
    #[test]
    fn bad_sbfd_values_and_keys_are_named() {
        let path = Path::new("s.toml");
        for (text, key, value) in [
            ("[sbfd]\ninterval_ms = 0", "sbfd.interval_ms", "0"),
            ("[sbfd]\ninterval_ms = 60001", "sbfd.interval_ms", "60001"),
            ("[sbfd]\ninterval_ms = 10\nmultiplier = 0", "sbfd.multiplier", "0"),
            ("[sbfd]\ninterval_ms = 10\nreflector = [\"192.0.2.1\"]", "sbfd.reflector", "192.0.2.1"),
            ("[sbfd]\ninterval_ms = 10\nreflector = [\"192.0.2.1=0\"]", "sbfd.reflector", "192.0.2.1=0"),
            ("[sbfd]\ninterval_ms = 10\nrouter_mac = \"02:00:00:00:01\"", "sbfd.router_mac", "02:00:00:00:01"),
            ("[sbfd]\nno_live_path = \"dropped\"", "sbfd.no_live_path", "dropped"),
        ] {
            let file = AgentFile::from_toml_text(path, text).unwrap();
            let e = file.sbfd().unwrap_err();
            assert!(
                matches!(&e, ConfigError::Value { key: k, value: v, .. } if k == key && v == value),
                "{text}: {e:?}"
            );
            assert!(e.to_string().contains("s.toml"), "{e}");
        }
        let e = AgentFile::from_toml_text(path, "[sbfd]\ninterval = 10").unwrap_err();
        assert!(matches!(&e, ConfigError::UnknownKey { key, .. } if key == "sbfd.interval"), "{e:?}");
        let e = AgentFile::from_toml_text(path, "[sbfd]\nmultiplier = 300").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "a multiplier over 255: {e:?}");
    }

    /// What a reload checks before applying anything: every key a start
    /// reads, refused with its key and value.
    #[cfg(feature = "bgp")]
    #[test]
    fn check_refuses_every_value_a_start_would() {
        let path = Path::new("c.toml");
        for (text, key, value) in [
            ("[attach]\nttl = \"sometimes\"", "attach.ttl", "sometimes"),
            ("[attach]\nmtu_policy = \"maybe\"", "attach.mtu_policy", "maybe"),
            ("[attach]\nlookup = \"trie\"", "attach.lookup", "trie"),
            ("[attach]\nmode = \"fast\"", "attach.mode", "fast"),
            ("[attach]\nhook = \"ingress\"", "attach.hook", "ingress"),
            ("[listeners]\nread_access = \"some\"", "listeners.read_access", "some"),
            ("[bgp]\nsession_down = \"bogus\"", "bgp.session_down", "bogus"),
            ("[bgp]\nprecedence = \"bgp,bgp\"", "bgp.precedence", "bgp,bgp"),
            ("[sbfd]\ninterval_ms = 10\nmultiplier = 0", "sbfd.multiplier", "0"),
            ("[sbfd]\ninterval_ms = 10\nreflector = [\"nonsense\"]", "sbfd.reflector", "nonsense"),
        ] {
            let file = AgentFile::from_toml_text(path, text).unwrap();
            let e = file.check().unwrap_err();
            assert!(
                matches!(&e, ConfigError::Value { key: k, value: v, .. } if k == key && v == value),
                "{text}: {e:?}"
            );
        }
        let good =
            "[attach]\nttl = \"copy\"\nhook = \"egress\"\n[bgp]\nsession_down = \"withdraw\"\n[sbfd]\ninterval_ms = 10";
        AgentFile::from_toml_text(path, good).unwrap().check().unwrap();
    }

    /// Every key the file takes has its row in docs/operations.md's table
    /// (`sbfd.no_live_path` and `bgp.precedence` had none).
    #[test]
    fn every_key_is_in_the_operations_guide() {
        let guide = include_str!("../../docs/operations.md");
        let rows: Vec<&str> = guide.lines().filter(|l| l.starts_with("| `")).collect();
        let listed = |key: &str| rows.iter().any(|r| r.contains(&format!("`{key}`")));
        let mut missing: Vec<String> = TOP.iter().filter(|k| !listed(k)).map(|k| (*k).to_owned()).collect();
        for (section, keys) in [("attach", ATTACH), ("listeners", LISTENERS), ("bgp", BGP), ("sbfd", SBFD)] {
            missing.extend(keys.iter().map(|k| format!("{section}.{k}")).filter(|k| !listed(k)));
        }
        // Sections are keys of the top level, not rows of their own.
        missing.retain(|k| !["attach", "listeners", "bgp", "sbfd"].contains(&k.as_str()));
        assert!(missing.is_empty(), "not in docs/operations.md's key table: {missing:?}");
    }
}
