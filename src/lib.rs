mod skel {
    #![allow(clippy::all, missing_docs, dead_code, unused_imports, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/encap.skel.rs"));
}
mod testing_skel {
    #![allow(clippy::all, missing_docs, dead_code, unused_imports, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/testing.skel.rs"));
}
