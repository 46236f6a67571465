//! `Apply` and `ApplyStream` on the agent's side: the stream gathered
//! within the agent's size limit, the removal guard checked here (so a
//! client needs one round trip), and the reply cut into messages under 4 MB
//! (streamed) or cut short with a count of what it leaves out (unary).

use prost::Message;
use tonic::{Status, Streaming};

use super::proto::v1 as pb;
use crate::domain::desired::{DesiredRoute, DesiredSource, DesiredState};
use crate::domain::route::Table;
use crate::fib::apply::ApplyReport;

/// Routes of the sample a refusal by the removal guard carries.
const REFUSAL_SAMPLE: usize = 10;

/// Receives every chunk of an `ApplyStream` (nothing is applied before the
/// last: a broken stream changes nothing), refusing a stream whose encoded
/// size passes `max_bytes` as soon as it does.
///
/// # Errors
/// OUT_OF_RANGE over the limit; INVALID_ARGUMENT for no chunk or a DSCP
/// table given twice; the transport's status for a broken stream.
pub(crate) async fn gather(
    stream: &mut Streaming<pb::ApplyRequest>,
    max_bytes: Option<u64>,
) -> Result<pb::ApplyRequest, Status> {
    let mut all = pb::ApplyRequest::default();
    let mut first = true;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await? {
        bytes += chunk.encoded_len() as u64;
        if let Some(max) = max_bytes.filter(|max| bytes > *max) {
            return Err(Status::out_of_range(format!(
                "ApplyStream: over {bytes} bytes received, more than this agent accepts in one apply ({max} bytes, \
                 its --max-apply-bytes): nothing was applied; raise the limit on the agent \
                 (--max-apply-bytes or [listeners] max_apply_bytes), or apply the table in parts"
            )));
        }
        if !chunk.dscp_map.is_empty() && !all.dscp_map.is_empty() {
            return Err(Status::invalid_argument("dscp_map: given in more than one chunk: give it once"));
        }
        if first {
            all.dry_run = chunk.dry_run;
            all.max_remove_share = chunk.max_remove_share;
            first = false;
        }
        if all.routes.is_empty() {
            all.routes = chunk.routes;
        } else {
            all.routes.extend(chunk.routes);
        }
        all.sources.extend(chunk.sources);
        if !chunk.dscp_map.is_empty() {
            all.dscp_map = chunk.dscp_map;
        }
    }
    if first {
        return Err(Status::invalid_argument(
            "ApplyStream: no chunk received: send at least one (routes may be empty)",
        ));
    }
    Ok(all)
}

impl super::Writes {
    /// Applies `desired` unless it removes more than `max_remove_share` of
    /// the routes in force (then nothing changes, and the refusal says how
    /// many and which). The guard is the apply's own
    /// ([`crate::ApplyOptions::max_remove_share`]): checked on the plan that
    /// is then written, merged with BGP's routes where origins are kept, so
    /// the table is compared once. The agent's applies run one at a time.
    pub(crate) fn apply_guarded(
        &self,
        desired: &DesiredState,
        dry_run: bool,
        max_remove_share: Option<f64>,
    ) -> Result<ApplyReport, Status> {
        let _one = self.applying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut options = crate::ApplyOptions::default().dry_run(dry_run);
        if let Some(max) = max_remove_share {
            options = options.max_remove_share(max);
        }
        self.apply(desired, options).map_err(super::status)
    }
}

/// `max_remove_share` checked: 0..=1.
///
/// # Errors
/// INVALID_ARGUMENT outside it.
pub(crate) fn guard_share(share: Option<f64>) -> Result<Option<f64>, Status> {
    match share {
        Some(s) if !(0.0..=1.0).contains(&s) => {
            Err(Status::invalid_argument(format!("max_remove_share: {s} is not a share (0..=1)")))
        }
        other => Ok(other),
    }
}

/// The removal guard's refusal (`RouteError::RemovalRefused`):
/// FAILED_PRECONDITION, its message for a person and a [`pb::RemovalRefused`]
/// in the details for a program.
pub(crate) fn refusal(e: &crate::error::RouteError) -> Option<Status> {
    let crate::error::RouteError::RemovalRefused { removed, current, max_share, sample, added, replaced } = e else {
        return None;
    };
    let details = pb::RemovalRefused {
        removed: *removed as u64,
        current: *current as u64,
        max_remove_share: *max_share,
        sample: sample
            .iter()
            .take(REFUSAL_SAMPLE)
            .map(|(t, p)| pb::RouteKey { prefix: p.to_string(), table: t.id() })
            .collect(),
        added: *added as u64,
        replaced: *replaced as u64,
    };
    Some(super::details::status_with(
        tonic::Code::FailedPrecondition,
        e.to_string(),
        super::details::REMOVAL_REFUSED,
        &details,
    ))
}

/// An apply's report as the protocol's reply.
pub(crate) fn apply_reply(report: &crate::fib::apply::ApplyReport) -> pb::ApplyReply {
    let keys = |v: &[(Table, ipnetwork::IpNetwork)]| {
        v.iter().map(|(t, p)| pb::RouteKey { prefix: p.to_string(), table: t.id() }).collect()
    };
    pb::ApplyReply {
        added: keys(&report.added),
        replaced: keys(&report.replaced),
        removed: keys(&report.removed),
        unchanged: report.unchanged as u64,
        map_operations: report.map_operations as u64,
        dry_run: report.dry_run,
        summary: report.to_string(),
        set_aside: report.set_aside.iter().map(ToString::to_string).collect(),
        sources_set: report.sources_set.iter().map(ToString::to_string).collect(),
        sources_removed: report.sources_removed.iter().map(ToString::to_string).collect(),
        dscp_changed: report.dscp_changed,
        ..Default::default()
    }
}

/// `reply` as a unary RPC (`Apply`, `Reload`) answers it: at most
/// [`KEYS_PER_REPLY`] entries of each list, and for each list the count of
/// entries left out. The reply of a change already made must reach the
/// client whatever the change's size: uncut, removing 300,000 routes
/// answered 5.7 MB, which a client with gRPC's default 4 MB limit refuses
/// (RESOURCE_EXHAUSTED) although the change was made. Cut, a reply is at
/// most [`KEYS_PER_REPLY`] entries of six lists: under 3 MB even for the
/// longest IPv6 keys (`ApplyStream` lists every entry, in messages of this
/// size).
pub(crate) fn capped(mut reply: pb::ApplyReply) -> pb::ApplyReply {
    fn cut<T>(v: &mut Vec<T>) -> u64 {
        let left_out = v.len().saturating_sub(KEYS_PER_REPLY);
        v.truncate(KEYS_PER_REPLY);
        left_out as u64
    }
    reply.added_left_out += cut(&mut reply.added);
    reply.replaced_left_out += cut(&mut reply.replaced);
    reply.removed_left_out += cut(&mut reply.removed);
    reply.set_aside_left_out += cut(&mut reply.set_aside);
    reply.sources_set_left_out += cut(&mut reply.sources_set);
    reply.sources_removed_left_out += cut(&mut reply.sources_removed);
    reply
}

/// An `ApplyRequest` as the library's desired state (checked when applied).
pub(crate) fn desired_of(req: pb::ApplyRequest) -> DesiredState {
    DesiredState {
        routes: req
            .routes
            .into_iter()
            .map(|r| DesiredRoute {
                prefix: r.prefix,
                policy: r.policy,
                tc: Some(r.tc).filter(|t| !t.is_empty()),
                table: Some(r.table),
                entropy_label: Some(r.entropy_label).filter(|e| !e.is_empty()),
                policy_name: Some(r.policy_name).filter(|n| !n.is_empty()),
            })
            .collect(),
        sources: req.sources.into_iter().map(|s| DesiredSource { prefix: s.prefix, table: s.table }).collect(),
        dscp_map: Some(req.dscp_map)
            .filter(|d| !d.is_empty())
            .map(|d| d.into_iter().map(|v| u8::try_from(v).unwrap_or(u8::MAX)).collect()),
    }
}

/// Entries of each list per `ApplyStream` reply message, and the most a
/// unary reply lists ([`capped`]): a key is a few dozen bytes, so a message
/// stays far under 4 MB.
const KEYS_PER_REPLY: usize = 8192;

/// `reply` as messages of at most [`KEYS_PER_REPLY`] entries per list; the
/// first has the scalar fields.
pub(crate) fn reply_chunks(mut reply: pb::ApplyReply) -> Vec<pb::ApplyReply> {
    fn take<T>(v: &mut Vec<T>) -> Vec<T> {
        let n = v.len().min(KEYS_PER_REPLY);
        v.drain(..n).collect()
    }
    let longest = [reply.added.len(), reply.replaced.len(), reply.removed.len(), reply.set_aside.len()]
        .into_iter()
        .chain([reply.sources_set.len(), reply.sources_removed.len()])
        .max()
        .unwrap_or(0);
    let mut chunks = Vec::with_capacity(longest.div_ceil(KEYS_PER_REPLY).max(1));
    loop {
        let mut chunk = if chunks.is_empty() {
            pb::ApplyReply {
                summary: std::mem::take(&mut reply.summary),
                unchanged: reply.unchanged,
                map_operations: reply.map_operations,
                dry_run: reply.dry_run,
                dscp_changed: reply.dscp_changed,
                ..Default::default()
            }
        } else {
            pb::ApplyReply::default()
        };
        chunk.added = take(&mut reply.added);
        chunk.replaced = take(&mut reply.replaced);
        chunk.removed = take(&mut reply.removed);
        chunk.set_aside = take(&mut reply.set_aside);
        chunk.sources_set = take(&mut reply.sources_set);
        chunk.sources_removed = take(&mut reply.sources_removed);
        chunks.push(chunk);
        if chunks.len() * KEYS_PER_REPLY >= longest {
            return chunks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, base: u32) -> Vec<pb::RouteKey> {
        (0..n).map(|i| pb::RouteKey { prefix: format!("10.0.{i}.0/24"), table: base }).collect()
    }

    #[test]
    fn the_removal_guards_refusal_is_failed_precondition_with_what_it_would_remove() {
        assert!(guard_share(Some(1.5)).is_err() && guard_share(Some(-0.1)).is_err());
        assert_eq!(guard_share(None).unwrap(), None);
        let refused = crate::error::RouteError::RemovalRefused {
            removed: 12,
            current: 16,
            max_share: 0.5,
            sample: (0..12).map(|i| (Table::Main, format!("10.0.{i}.0/24").parse().unwrap())).collect(),
            added: 1,
            replaced: 2,
        };
        let status = refusal(&refused).unwrap();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(status.message().contains("removes 12 of 16 routes (75%)"), "{}", status.message());
        // The gRPC richer error model: a google.rpc.Status holding one Any.
        let rich = crate::agent::details::RpcStatus::decode(status.details()).unwrap();
        assert_eq!((rich.code, rich.details.len()), (tonic::Code::FailedPrecondition as i32, 1));
        assert_eq!(rich.details[0].type_url, "type.googleapis.com/lnetd.encap.v1.RemovalRefused");
        let details = crate::agent::details::removal_refused(&status).expect("a RemovalRefused, the gRPC way");
        assert_eq!((details.removed, details.current, details.sample.len()), (12, 16, REFUSAL_SAMPLE));
        assert_eq!((details.added, details.replaced), (1, 2));
        assert_eq!(details.sample[0].prefix, "10.0.0.0/24");
        assert!(refusal(&crate::error::RouteError::ReadOnly).is_none());
    }

    /// The longest keys there are: an IPv6 /128 written out in full, in the
    /// highest table.
    fn longest_keys(n: usize) -> Vec<pb::RouteKey> {
        (0..n)
            .map(|i| pb::RouteKey {
                prefix: format!("ffff:ffff:ffff:ffff:ffff:ffff:ffff:{:04x}/128", i % 0x10000 + 0x1000),
                table: u32::MAX,
            })
            .collect()
    }

    #[test]
    fn a_unary_reply_stays_under_4_mb_whatever_the_change_and_counts_what_it_leaves_out() {
        // The report of a change of 300,001 routes of every kind at once, on
        // the longest keys: over 4 MB whole.
        const N: usize = 300_001;
        let strings = |n: usize| longest_keys(n).into_iter().map(|k| k.prefix).collect::<Vec<_>>();
        let whole = pb::ApplyReply {
            added: longest_keys(N),
            replaced: longest_keys(N),
            removed: longest_keys(N),
            set_aside: strings(N),
            sources_set: strings(N),
            sources_removed: strings(N),
            summary: "300001 added, 300001 replaced, 300001 removed".into(),
            unchanged: 7,
            ..Default::default()
        };
        assert!(whole.encoded_len() > 4 << 20, "the test proves nothing: {} bytes", whole.encoded_len());
        let reply = capped(whole.clone());
        assert!(reply.encoded_len() < 3 << 20, "{} bytes", reply.encoded_len());
        let left = (N - KEYS_PER_REPLY) as u64;
        assert_eq!(
            [
                reply.added_left_out,
                reply.replaced_left_out,
                reply.removed_left_out,
                reply.set_aside_left_out,
                reply.sources_set_left_out,
                reply.sources_removed_left_out
            ],
            [left; 6]
        );
        // The first entries are kept, in order, with every scalar field.
        assert_eq!(reply.removed[..], whole.removed[..KEYS_PER_REPLY]);
        assert_eq!((reply.summary.as_str(), reply.unchanged), (whole.summary.as_str(), 7));
        // A reply within the cap is left whole, and says nothing is left out.
        let small = pb::ApplyReply { removed: keys(3, 0), ..Default::default() };
        assert_eq!(capped(small.clone()), small);
        // A streamed reply's messages have the same bound.
        assert!(reply_chunks(whole).iter().all(|c| c.encoded_len() < 3 << 20));
    }

    #[test]
    fn a_large_reply_is_cut_into_messages_that_concatenate_back() {
        let reply = pb::ApplyReply {
            added: keys(KEYS_PER_REPLY * 2 + 1, 0),
            removed: keys(3, 1),
            summary: "20000 added".into(),
            unchanged: 7,
            dry_run: true,
            ..Default::default()
        };
        let chunks = reply_chunks(reply.clone());
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.added.len() <= KEYS_PER_REPLY));
        assert_eq!((chunks[0].summary.as_str(), chunks[0].unchanged, chunks[0].dry_run), ("20000 added", 7, true));
        assert!(chunks[1..].iter().all(|c| c.summary.is_empty() && c.unchanged == 0));
        let mut back = chunks[0].clone();
        for c in &chunks[1..] {
            back.added.extend(c.added.iter().cloned());
            back.removed.extend(c.removed.iter().cloned());
        }
        assert_eq!(back, reply);
        // An empty reply is still one message (it carries the summary).
        assert_eq!(reply_chunks(pb::ApplyReply::default()).len(), 1);
    }
}
