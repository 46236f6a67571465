//! Who may do what on the agent's local socket: every RPC of both protocols
//! is a read or a write ([`METHODS`], one table); the peer's credentials
//! (SO_PEERCRED and SO_PEERGROUPS, taken by the kernel at connect time)
//! decide. Root, the agent's own user and members of the write group may
//! write; everyone else may read, or nothing ([`ReadAccess`]).
//!
//! The TCP listeners are not filtered here: a TLS listener with a client CA
//! authenticates its peers itself, and the plaintext loopback listener is an
//! explicit opt-in that admits every local user.

use std::fmt;
use std::str::FromStr;
use std::task::{Context, Poll};

use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;

use super::local::Peer;

/// What an RPC does to the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads routes, counters or the program's verdict.
    Read,
    /// Changes routes, sources or the DSCP table.
    Write,
}

/// Every RPC the agent serves, by its HTTP/2 path, and what it does. A
/// unit test checks this table against the `.proto` files, so an RPC added
/// there without a line here fails the build's tests; an RPC missing from it
/// anyway is treated as a write.
pub const METHODS: &[(&str, Access)] = &[
    ("/lnetd.encap.v1.Encapsulator/SetRoute", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/RemoveRoute", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/ListRoutes", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/StreamRoutes", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/SetSource", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/RemoveSource", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/Apply", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/Explain", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/GetRouteCounters", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/GetStats", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/WatchStats", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/Reload", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/StreamRouteCounters", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/ApplyStream", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/GetStatus", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/Verify", Access::Read),
    ("/lnetd.encap.v1.Encapsulator/Repair", Access::Write),
    ("/lnetd.encap.v1.Encapsulator/GetLiveness", Access::Read),
    ("/counters.int_map/GetMaps", Access::Read),
    ("/counters.int_map/GetMapCounters", Access::Read),
    ("/counters.int_UpdateMap/UpdateMap", Access::Write),
    ("/counters.int_UpdateMap/DeleteMap", Access::Write),
];

/// What an RPC at `path` does; an unknown path counts as a write (refused
/// to whoever may not write).
pub fn access(path: &str) -> Access {
    METHODS.iter().find(|(p, _)| *p == path).map_or(Access::Write, |(_, a)| *a)
}

/// What the users who may not write may do on the local socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAccess {
    /// Read (routes, counters, explain): the default. The socket is 0666.
    #[default]
    All,
    /// Nothing: the socket is 0660 (owner and write group) and the agent
    /// refuses reads from anyone else too.
    None,
}

impl FromStr for ReadAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(ReadAccess::All),
            "none" => Ok(ReadAccess::None),
            other => Err(format!("{other:?}: say all (every local user may read) or none")),
        }
    }
}

impl fmt::Display for ReadAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadAccess::All => "all",
            ReadAccess::None => "none",
        })
    }
}

/// The decision rules, resolved once when the agent starts.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The agent's own effective uid (may always write: it is the owner).
    pub owner_uid: u32,
    /// The write group, by name and gid.
    pub write_group: Option<(String, u32)>,
    /// What the others may do.
    pub read_access: ReadAccess,
}

/// Set on a request of the local socket by a peer that may only read: the
/// service may answer such a peer from recent work instead of doing it
/// again (a full comparison costs seconds of CPU at a million routes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOnlyPeer;

impl Authorization {
    /// Whether `peer` may change routes: root, the agent's own user, or a
    /// member of the write group.
    fn may_write(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || peer.uid == self.owner_uid
            || self.write_group.as_ref().is_some_and(|(_, gid)| peer.in_group(*gid))
    }

    /// Whether `peer` may do `access`; the refusal says which uid was refused
    /// and who may.
    ///
    /// # Errors
    /// `PERMISSION_DENIED`, naming the uid and the write group.
    pub fn check(&self, peer: &Peer, access: Access, method: &str) -> Result<(), tonic::Status> {
        let writer = self.may_write(peer);
        if writer || (access == Access::Read && self.read_access == ReadAccess::All) {
            return Ok(());
        }
        let who = match &self.write_group {
            Some((name, gid)) => format!("root and members of group {name} (gid {gid})"),
            None => "only root (the agent runs without --write-group)".to_owned(),
        };
        let what = match access {
            Access::Write => format!("may not change this host's routes ({method}): {who} may"),
            Access::Read => format!("may not read this agent ({method}, --read-access none): {who} may"),
        };
        Err(tonic::Status::permission_denied(format!("uid {} (pid {}) {what}", peer.uid, peer.pid)))
    }
}

/// The tower layer that applies an [`Authorization`] to every request.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    rules: std::sync::Arc<Authorization>,
}

impl AuthorizeLayer {
    /// The layer for `rules`.
    pub fn new(rules: Authorization) -> AuthorizeLayer {
        AuthorizeLayer { rules: std::sync::Arc::new(rules) }
    }
}

impl<S> tower_layer::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize { inner, rules: std::sync::Arc::clone(&self.rules) }
    }
}

/// [`AuthorizeLayer`]'s service.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    rules: std::sync::Arc<Authorization>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if request.extensions().get::<Peer>().is_some_and(|peer| !self.rules.may_write(peer)) {
            request.extensions_mut().insert(ReadOnlyPeer);
        }
        // No credentials (not a connection of the local socket): refused, since
        // this layer is only ever put on the local socket's server.
        let verdict = match request.extensions().get::<Peer>() {
            Some(peer) => self.rules.check(peer, access(&path), &path),
            None => Err(tonic::Status::permission_denied("no peer credentials on this connection")),
        };
        match verdict {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                log::info!("refused {path}: {}", status.message());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/package.Service/Method` for every rpc of every service in a .proto text.
    fn rpcs(proto: &str) -> Vec<String> {
        let package = proto
            .lines()
            .find_map(|l| l.trim().strip_prefix("package ").map(|p| p.trim_end_matches(';').trim().to_owned()))
            .unwrap_or_default();
        let mut service = String::new();
        let mut out = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap_or_default().to_owned();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.push(format!("/{package}.{service}/{name}"));
            }
        }
        out
    }

    #[test]
    fn every_rpc_of_both_protocols_is_classified_and_nothing_else() {
        let mut served = rpcs(include_str!("../../proto/lnetd/encap/v1/encap.proto"));
        served.extend(rpcs(include_str!("../../proto/counters.proto")));
        assert!(served.len() >= 14, "{served:?}");
        for rpc in &served {
            assert!(METHODS.iter().any(|(p, _)| p == rpc), "{rpc} is served but not classified in METHODS");
        }
        for (path, _) in METHODS {
            assert!(served.iter().any(|s| s == path), "{path} is in METHODS but no .proto declares it");
        }
    }

    #[test]
    fn writes_are_the_changes() {
        let writes: Vec<&str> = METHODS
            .iter()
            .filter(|(_, a)| *a == Access::Write)
            .map(|(p, _)| p.rsplit('/').next().unwrap_or(p))
            .collect();
        assert_eq!(
            writes,
            [
                "SetRoute",
                "RemoveRoute",
                "SetSource",
                "RemoveSource",
                "Apply",
                "Reload",
                "ApplyStream",
                "Repair",
                "UpdateMap",
                "DeleteMap"
            ]
        );
        assert_eq!(access("/lnetd.encap.v1.Encapsulator/Reset"), Access::Write, "unknown: a write");
    }

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer { uid, gid, pid: 4242, groups: groups.to_vec() }
    }

    #[test]
    fn root_owner_and_group_write_others_read_or_nothing() {
        let mut rules =
            Authorization { owner_uid: 990, write_group: Some(("netops".into(), 1500)), read_access: ReadAccess::All };
        let set = "/lnetd.encap.v1.Encapsulator/SetRoute";
        for writer in [peer(0, 0, &[]), peer(990, 990, &[]), peer(1000, 1500, &[]), peer(1001, 100, &[27, 1500])] {
            assert!(rules.check(&writer, Access::Write, set).is_ok(), "{writer:?}");
        }
        let nobody = peer(65534, 65534, &[]);
        let e = rules.check(&nobody, Access::Write, set).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("uid 65534") && e.message().contains("group netops (gid 1500)"), "{e:?}");
        assert!(rules.check(&nobody, Access::Read, "/lnetd.encap.v1.Encapsulator/ListRoutes").is_ok());
        rules.read_access = ReadAccess::None;
        let e = rules.check(&nobody, Access::Read, "/lnetd.encap.v1.Encapsulator/ListRoutes").unwrap_err();
        assert!(e.message().contains("--read-access none"), "{e:?}");
        assert!(rules.check(&peer(1000, 1500, &[]), Access::Read, "x").is_ok());
        rules.write_group = None;
        let e = rules.check(&peer(1000, 1500, &[]), Access::Write, set).unwrap_err();
        assert!(e.message().contains("only root"), "{e:?}");
    }

    #[test]
    fn read_access_parses_its_two_words() {
        assert_eq!("all".parse::<ReadAccess>(), Ok(ReadAccess::All));
        assert_eq!("none".parse::<ReadAccess>(), Ok(ReadAccess::None));
        assert!("some".parse::<ReadAccess>().is_err());
        assert_eq!(ReadAccess::None.to_string(), "none");
    }
}
