//! Handing freed heap memory back to the system.

#![allow(unsafe_code)]

/// Returns the allocator's free memory to the system. glibc keeps what a
/// large apply freed (a million routes' strings and nodes) in its arenas: an agent's resident memory grew from 1.05 GB after adopting
/// 1.2 million routes to 2.9 GB after a dozen applies, past the shipped
/// unit's `MemoryMax=2G`, while using no more. Costs a walk of the free
/// lists, each arena locked meanwhile: called after a large `Apply` only
/// (not after listings, BGP's whole applies or reloads, which free less
/// and less often). A no-op with other allocators.
pub(crate) fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
