//! Replays the fuzz seeds and the committed, minimised fuzz corpus
//! (`fuzz/seeds/inbound`, `fuzz/corpus-min/inbound`; docs/fuzzing.md) through the
//! properties of the fuzz target, so a regression on any input the fuzzer found
//! interesting fails `cargo test`.

use std::path::Path;

#[test]
fn fuzz_seeds_and_corpus_hold_the_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["seeds/inbound", "corpus-min/inbound"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| braid_protocol::fuzzing::inbound(&data));
            assert!(result.is_ok(), "property violated by {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 13, "the seeds are there ({replayed} inputs)");
}

#[test]
fn every_seed_decodes_as_intended() {
    use braid_protocol::inbound::{decode, Decoded};
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/inbound");
    for name in [
        "auth_ok",
        "auth_fail",
        "start",
        "stop",
        "links",
        "cfg_get",
        "cfg_set",
        "rotate",
        "update",
        "expired",
    ] {
        let text = std::fs::read_to_string(seeds.join(format!("{name}.json"))).unwrap();
        assert!(
            matches!(decode(&text), Ok(Decoded::Known(_))),
            "{name}: {:?}",
            decode(&text)
        );
    }
    // config.update with `encoder` decodes (the agent refuses it by name).
    let text = std::fs::read_to_string(seeds.join("cfg_update.json")).unwrap();
    assert!(matches!(decode(&text), Ok(Decoded::Known(_))));
}
