//! Source prefixes selecting an alternate table, and the settings word that
//! tells the program whether to look them up.

use super::*;

/// The family named in a full source table's error.
pub(crate) fn source_family(prefix: &IpNetwork) -> &'static str {
    if prefix.is_ipv4() {
        "IPv4 source"
    } else {
        "IPv6 source"
    }
}

impl Fib {
    pub(super) fn sources_map(&self, prefix: &IpNetwork) -> (&BpfMap, u32) {
        if prefix.is_ipv4() {
            (&self.maps.sources_v4, self.config.max_routes_v4)
        } else {
            (&self.maps.sources_v6, self.config.max_routes_v6)
        }
    }

    /// Points packets from `prefix` at an alternate table. The program is
    /// told to look at sources before the first one is in place (a lookup that
    /// finds nothing is harmless), and stops looking only after the last is gone.
    pub(crate) fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut rib = self.changer()?;
        // One rule with apply's: a source selects an alternate table with routes.
        if table == Table::Main || table_routes(&rib, table).next().is_none() {
            return Err(RouteError::Invalid(crate::domain::desired::DesiredError {
                what: format!("source {prefix}"),
                reason: format!(
                    "table {} is not an alternate table with routes: add a route to it first (a source of an empty \
                     table would send its packets to the main table, and the state could not be applied back)",
                    table.id()
                ),
            }));
        }
        let (map, capacity) = self.sources_map(&prefix);
        let enabling = rib.sources.is_empty();
        if enabling {
            self.write_source_count(1)?;
        }
        let value = types::source_value { table: table.id() };
        if let Err(e) = map.update(RouteKey::new(prefix).bytes(), abi::bytes_of(&value)) {
            if enabling {
                if let Err(undo) = self.write_source_count(0) {
                    // Harmless: the program does one source lookup that finds nothing.
                    log::warn!("{undo} (the program keeps looking up sources)");
                }
            }
            return Err(full(source_family(&prefix), capacity)(e));
        }
        rib.sources.insert(prefix, table);
        if let Err(e) = self.write_settings(&rib) {
            // The count was raised before the source went in; it only saves a lookup when zero.
            log::warn!("{e} (the program may look up sources it need not)");
        }
        self.saved(&mut rib)
    }

    /// Stops selecting a table by `prefix`; `false` when it selected none.
    pub(crate) fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut rib = self.changer()?;
        if !rib.sources.contains_key(&prefix) {
            return Ok(false);
        }
        self.sources_map(&prefix).0.delete(RouteKey::new(prefix).bytes())?;
        rib.sources.remove(&prefix);
        if let Err(e) = self.write_settings(&rib) {
            // Harmless: the program does a source lookup that finds nothing.
            log::warn!("{e} (the program keeps looking up sources)");
        }
        self.saved(&mut rib)?;
        Ok(true)
    }

    pub(super) fn write_source_count(&self, sources: u32) -> Result<(), MapError> {
        let value = types::settings { sources };
        self.maps.settings.update(&0u32.to_ne_bytes(), abi::bytes_of(&value))
    }

    /// Tells the program whether to look at sources at all (none: one lookup saved per packet).
    pub(super) fn write_settings(&self, rib: &Rib) -> Result<(), MapError> {
        self.write_source_count(u32::try_from(rib.sources.len()).unwrap_or(u32::MAX))
    }
}
