//! The decapsulator's loader: its programs (`xdp_decap`, `tc_decap`: one
//! worker, one entry point per hook) with their two shared maps, the pop set
//! and its counters, opened from the embedded object and configured.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::ErrorKind;
use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::abi::decap;
use crate::domain::config::{AttachedMode, OtherLabels};
use crate::error::LoadError;
use crate::sys::map::BpfMap;
use crate::sys::{bpffs, libbpf_log, privileges};

/// Load-time settings of the decapsulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecapConfig {
    pub other: OtherLabels,
    pub max_pop_labels: u32,
}

/// The decapsulator's maps, each by its own fd. Names are the maps' names in
/// the object and their pin file names.
#[derive(Debug)]
pub(crate) struct DecapMaps {
    pub pop_labels: BpfMap,
    pub decap_counters: BpfMap,
}

impl DecapMaps {
    /// Every map, to pin them.
    pub(crate) fn all(&self) -> Vec<&BpfMap> {
        vec![&self.pop_labels, &self.decap_counters]
    }

    /// Opens every map pinned in `dir`.
    pub(crate) fn from_pins(dir: &Path) -> Result<DecapMaps, (&'static str, Errno)> {
        let open = |name: &'static str| -> Result<BpfMap, (&'static str, Errno)> {
            let fd = bpffs::get(&dir.join(name)).map_err(|e| (name, e))?;
            BpfMap::from_fd(fd, name).map_err(|e| (name, e.errno))
        };
        Ok(DecapMaps { pop_labels: open("pop_labels")?, decap_counters: open("decap_counters")? })
    }
}

/// The state file of a pinned decapsulator: what its pins do not say (the
/// load-time policy, the attachment). The pop set is read from its map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DecapState {
    /// [`DecapState::FORMAT`].
    pub format: u32,
    /// Who wrote it.
    pub written_by: String,
    /// `pass` or `drop`.
    pub other_labels: String,
    pub max_pop_labels: u32,
    pub ifindex: u32,
    /// As [`AttachedMode`]'s `Display`.
    pub mode: String,
}

impl DecapState {
    /// The newest format this build writes: 2, for a decapsulator on TC
    /// ingress (so that a build that knows only XDP calls it incompatible
    /// rather than corrupt); an XDP one is still written as 1.
    pub(crate) const FORMAT: u32 = 2;

    /// Whether this build reads `format`.
    pub(crate) fn reads(format: u32) -> bool {
        (1..=Self::FORMAT).contains(&format)
    }

    pub(crate) fn new(config: &DecapConfig, ifindex: u32, mode: AttachedMode) -> DecapState {
        DecapState {
            format: if mode == AttachedMode::Ingress { Self::FORMAT } else { 1 },
            written_by: env!("CARGO_PKG_VERSION").to_owned(),
            other_labels: match config.other {
                OtherLabels::Pass => "pass",
                OtherLabels::Drop => "drop",
            }
            .to_owned(),
            max_pop_labels: config.max_pop_labels,
            ifindex,
            mode: mode.to_string(),
        }
    }

    /// The configuration and the mode it records; `Err` says what is wrong.
    pub(crate) fn parts(&self) -> Result<(DecapConfig, AttachedMode), String> {
        let other = match self.other_labels.as_str() {
            "pass" => OtherLabels::Pass,
            "drop" => OtherLabels::Drop,
            other => return Err(format!("unknown other_labels {other:?}")),
        };
        let mode = self.mode.parse::<AttachedMode>().map_err(|e| e.to_string())?;
        if mode == AttachedMode::Egress {
            return Err("a decapsulator attached in egress mode".to_owned());
        }
        Ok((DecapConfig { other, max_pop_labels: self.max_pop_labels }, mode))
    }
}

/// The loaded decapsulator programs and their maps.
#[derive(Debug)]
pub(crate) struct LoadedDecap {
    /// `xdp_decap`.
    pub xdp: OwnedFd,
    /// `tc_decap` (tcx ingress).
    pub tc: OwnedFd,
    pub maps: DecapMaps,
}

fn kernel(step: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Kernel { step, source }
}

/// Loads the decapsulator's programs with `config` and maps of their own (the
/// pop set empty).
pub(crate) fn load(config: &DecapConfig) -> Result<LoadedDecap, LoadError> {
    if config.max_pop_labels == 0 {
        return Err(LoadError::Config("the pop set's capacity must be at least 1"));
    }
    if let Some(missing) = privileges::missing() {
        return Err(LoadError::Privileges(missing));
    }
    libbpf_log::route();

    let mut storage = MaybeUninit::uninit();
    let mut open = decap::DecapSkelBuilder::default().open(&mut storage).map_err(kernel("opening the object"))?;
    let rodata =
        open.maps.rodata_data.as_deref_mut().ok_or(LoadError::Config("the object has no .rodata (build problem)"))?;
    rodata.other_labels = match config.other {
        OtherLabels::Pass => decap::types::decap_other_labels::DECAP_OTHER_PASS,
        OtherLabels::Drop => decap::types::decap_other_labels::DECAP_OTHER_DROP,
    };
    open.maps.pop_labels.set_max_entries(config.max_pop_labels).map_err(kernel("sizing pop_labels"))?;
    let skel = open.load().map_err(|source| match source.kind() {
        ErrorKind::PermissionDenied => {
            LoadError::Privileges(privileges::MissingCapabilities(vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]))
        }
        _ => LoadError::Kernel { step: "loading (verifier)", source },
    })?;
    let dup = |prog: std::os::fd::BorrowedFd<'_>| {
        prog.try_clone_to_owned()
            .map_err(|e| LoadError::Kernel { step: "duplicating the program fd", source: e.into() })
    };
    let (xdp, tc) = (dup(skel.progs.xdp_decap.as_fd())?, dup(skel.progs.tc_decap.as_fd())?);
    let maps = DecapMaps {
        pop_labels: BpfMap::new(&skel.maps.pop_labels, "pop_labels")?,
        decap_counters: BpfMap::new(&skel.maps.decap_counters, "decap_counters")?,
    };
    Ok(LoadedDecap { xdp, tc, maps })
}
