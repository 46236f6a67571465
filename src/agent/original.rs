//! The proof of concept's protocol (package `counters`), served with its
//! semantics: three tables by name and kernel map id, one label per route,
//! replies that carry a message instead of an error status.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::counters::{
    int_map_server::IntMap, int_update_map_server::IntUpdateMap, Counters, CountersReply, MapEntry, MapInfo,
    MappacketRequest, MappaketReply, UpdateMapReply, UpdateMapRequest,
};
use super::{priority_table, top_label};
use crate::domain::label::{Label, LabelStack};
use crate::domain::prefix;
use crate::domain::route::{Route, Table};
use crate::encapsulator::Encapsulator;

/// The proof of concept's table names.
const DEFAULT_DST: &str = "default_dst";
const PRIORITY_DST: &str = "priority_dst";
const PRIORITY_CLIENTS: &str = "priority_clients";

/// Which table a map id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Routes(Table),
    Clients,
}

#[derive(Clone)]
pub(crate) struct Original {
    enc: Arc<Encapsulator>,
    writes: super::Writes,
    iface: String,
}

/// Runs a library call on the blocking pool (it takes the RIB lock and
/// writes maps and the state file).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("worker: {e}")))
}

impl Original {
    pub(crate) fn new(enc: Arc<Encapsulator>, writes: super::Writes, iface: &str) -> Original {
        Original { enc, writes, iface: iface.to_owned() }
    }

    fn check_interface(&self, asked: &str) -> Result<(), Status> {
        if asked.is_empty() || asked == self.iface {
            return Ok(());
        }
        Err(Status::not_found(format!("this agent serves {}, not {asked:?}", self.iface)))
    }

    /// (map id, name, target) of the three tables.
    fn tables(&self) -> Result<[(u32, &'static str, Target); 3], Status> {
        let [main, alt, sources] = self.enc.table_map_ids().map_err(|e| Status::internal(e.to_string()))?;
        Ok([
            (main, DEFAULT_DST, Target::Routes(Table::Main)),
            (alt, PRIORITY_DST, Target::Routes(priority_table())),
            (sources, PRIORITY_CLIENTS, Target::Clients),
        ])
    }

    fn target(&self, map_id: i32) -> Result<(&'static str, Target), String> {
        let tables = self.tables().map_err(|s| s.message().to_owned())?;
        tables.iter().find(|(id, _, _)| i64::from(*id) == i64::from(map_id)).map(|(_, name, t)| (*name, *t)).ok_or_else(
            || {
                let known: Vec<String> = tables.iter().map(|(id, name, _)| format!("{id} ({name})")).collect();
                format!("error: map id {map_id} is not one of this agent's tables: {}", known.join(", "))
            },
        )
    }

    fn update(&self, req: &UpdateMapRequest) -> Result<String, String> {
        let (name, target) = self.target(req.map_id)?;
        let subnet = prefix::parse(&req.subnet).map_err(|e| format!("error: subnet {:?}: {e}", req.subnet))?;
        match target {
            Target::Routes(table) => {
                let label = u32::try_from(req.lbl)
                    .map_err(|_| format!("error: label {}: MPLS labels are 0..=1048575", req.lbl))
                    .and_then(|l| Label::new(l).map_err(|e| format!("error: {e}")))?;
                self.writes
                    .set_route_in(table, &Route::new(subnet, LabelStack::single(label)))
                    .map_err(|e| format!("error: {e}"))?;
                Ok(format!("{subnet} -> label {label} in {name}"))
            }
            Target::Clients => {
                self.enc.set_source(subnet, priority_table()).map_err(|e| format!("error: {e}"))?;
                self.writes.activity.touch();
                Ok(format!("{subnet} added to {name}: its packets use {PRIORITY_DST}"))
            }
        }
    }

    fn delete(&self, req: &UpdateMapRequest) -> Result<String, String> {
        let (name, target) = self.target(req.map_id)?;
        let subnet = prefix::parse(&req.subnet).map_err(|e| format!("error: subnet {:?}: {e}", req.subnet))?;
        let removed = match target {
            Target::Routes(table) => self.writes.remove_in(table, subnet),
            Target::Clients => self.enc.remove_source(subnet),
        }
        .map_err(|e| format!("error: {e}"))?;
        if matches!(target, Target::Clients) {
            self.writes.activity.touch();
        }
        if removed {
            Ok(format!("{subnet} deleted from {name}"))
        } else {
            Err(format!("error: {subnet} is not in {name}"))
        }
    }
}

/// The reply message, success or failure alike, as the original answered.
fn reply(result: Result<String, String>) -> Response<UpdateMapReply> {
    let message = result.unwrap_or_else(|e| e);
    log::info!("counters protocol: {message}");
    Response::new(UpdateMapReply { message })
}

#[tonic::async_trait]
impl IntMap for Original {
    async fn get_maps(&self, request: Request<MappacketRequest>) -> Result<Response<MappaketReply>, Status> {
        self.check_interface(&request.get_ref().interface)?;
        let this = self.clone();
        blocking(move || this.maps()).await?
    }

    async fn get_map_counters(&self, request: Request<MappacketRequest>) -> Result<Response<CountersReply>, Status> {
        self.check_interface(&request.get_ref().interface)?;
        let this = self.clone();
        blocking(move || this.counters()).await?
    }
}

impl Original {
    fn maps(&self) -> Result<Response<MappaketReply>, Status> {
        let mut map_info = Vec::new();
        for (id, name, target) in self.tables()? {
            let entries = match target {
                Target::Routes(table) => self
                    .enc
                    .routes(table)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .iter()
                    .map(|r| MapEntry {
                        subnet: i32::from(r.prefix.prefix()),
                        ipaddress: r.prefix.network().to_string(),
                        lbl: top_label(r),
                    })
                    .collect(),
                Target::Clients => self
                    .enc
                    .sources()
                    .list()
                    .into_iter()
                    .filter(|(_, t)| *t == priority_table())
                    .map(|(p, _)| MapEntry {
                        subnet: i32::from(p.prefix()),
                        ipaddress: p.network().to_string(),
                        lbl: 0,
                    })
                    .collect(),
            };
            map_info.push(MapInfo { id: id as i32, name: name.to_owned(), entries });
        }
        Ok(Response::new(MappaketReply { map_info }))
    }

    fn counters(&self) -> Result<Response<CountersReply>, Status> {
        let routes = self.enc.counted_routes().map_err(|e| Status::internal(e.to_string()))?;
        let entries = routes
            .iter()
            .filter(|r| r.counters.counted)
            .map(|r| Counters {
                src: String::new(),
                dst: r.route.prefix.to_string(),
                lbl: top_label(&r.route),
                pkts: i64::try_from(r.counters.labelled.packets).unwrap_or(i64::MAX),
                bytes: i64::try_from(r.counters.labelled.bytes).unwrap_or(i64::MAX),
            })
            .collect();
        Ok(Response::new(CountersReply { entries }))
    }
}

#[tonic::async_trait]
impl IntUpdateMap for Original {
    async fn update_map(&self, request: Request<UpdateMapRequest>) -> Result<Response<UpdateMapReply>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        Ok(reply(blocking(move || this.update(&req)).await?))
    }

    async fn delete_map(&self, request: Request<UpdateMapRequest>) -> Result<Response<UpdateMapReply>, Status> {
        let (this, req) = (self.clone(), request.into_inner());
        Ok(reply(blocking(move || this.delete(&req)).await?))
    }
}
