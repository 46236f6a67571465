//! The reference model's own policy arithmetic (tests/common/model.rs, written
//! from docs/design.md's SR policies section) against the production `Policy` API,
//! and against the specification's properties. Pure: no root, no BPF.

mod common;

use common::model::{entropy_label, maglev_table, Lists, SLOTS};
use lnetd_host_encap::{
    labels::EntropyLabel, labels::SegmentList, labels::MAX_SEGMENT_LISTS, labels::POLICY_SLOTS, Label, LabelStack,
    Policy,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A policy of 1 to 8 lists: short or deep stacks, equal, small or wide
/// weights, and sometimes twins (two lists with the same labels).
fn random_lists(rng: &mut StdRng) -> Lists {
    let n = rng.random_range(1..=MAX_SEGMENT_LISTS);
    let weights = rng.random_range(0..3);
    let mut lists: Lists = Vec::new();
    for _ in 0..n {
        let labels = if !lists.is_empty() && rng.random_bool(0.1) {
            lists[rng.random_range(0..lists.len())].0.clone()
        } else {
            let depth = if rng.random_bool(0.7) { rng.random_range(1..=3) } else { rng.random_range(1..=16) };
            (0..depth).map(|_| rng.random_range(16..=Label::MAX)).collect()
        };
        let weight = match weights {
            0 => 1,
            1 => rng.random_range(1..=10),
            _ => rng.random_range(1..=u16::MAX),
        };
        lists.push((labels, weight));
    }
    lists
}

fn policy(lists: &Lists) -> Policy {
    let lists = lists
        .iter()
        .map(|(labels, weight)| SegmentList {
            stack: LabelStack::new(labels.iter().map(|&v| Label::new(v).expect("label")).collect::<Vec<_>>())
                .expect("stack"),
            weight: *weight,
        })
        .collect();
    Policy::new(lists, None).expect("policy")
}

#[test]
fn the_model_and_the_library_agree_on_the_slot_count() {
    assert_eq!(POLICY_SLOTS, SLOTS, "docs/design.md: the list is flow_table()[hash % 1021]");
}

/// The model's weighted Maglev gives, slot for slot, the table the library
/// programs, for a few hundred random policies (a change to the production
/// table, or to the permutation, weights or twin rule, is caught here before
/// any packet runs).
#[test]
fn the_models_maglev_table_is_the_librarys() {
    let mut rng = StdRng::seed_from_u64(0x6d61_676c_6576);
    let mut differing = Vec::new();
    let mut twins = 0;
    for _ in 0..400 {
        let lists = random_lists(&mut rng);
        let p = policy(&lists);
        twins += usize::from((1..lists.len()).any(|i| lists[..i].iter().any(|l| l.0 == lists[i].0)));
        let (model, library) = (maglev_table(&lists), p.flow_table());
        assert_eq!(model.len(), SLOTS);
        if model != library {
            let first = model.iter().zip(&library).position(|(a, b)| a != b);
            differing.push(format!("{p}: first differing slot {first:?}"));
        }
        // With the entropy label the table is the same: it depends on the lists only.
        let with_el = p.with_entropy_label(Some(EntropyLabel::Bottom));
        if let Ok(with_el) = with_el {
            assert_eq!(with_el.flow_table(), model, "{with_el}");
        }
    }
    assert!(twins > 10, "only {twins} policies had twin lists");
    assert!(differing.is_empty(), "{} of 400 policies differ:\n{}", differing.len(), differing.join("\n"));
}

/// What the specification promises of the table, checked on the model alone:
/// every list gets its weighted share of the slots (within one slot per list
/// and round), one list owns everything, and twins are distinct lists.
#[test]
fn the_models_table_meets_the_weights() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let lists = random_lists(&mut rng);
        let table = maglev_table(&lists);
        let total: f64 = lists.iter().map(|l| f64::from(l.1)).sum();
        for (i, (_, w)) in lists.iter().enumerate() {
            let got = table.iter().filter(|&&x| usize::from(x) == i).count() as f64;
            let want = SLOTS as f64 * f64::from(*w) / total;
            assert!(
                (got - want).abs() <= lists.len() as f64 + 1.0,
                "{lists:?}: list {i} has {got} slots, {want:.1} due"
            );
        }
    }
    assert!(maglev_table(&[(vec![100], 9)]).iter().all(|&x| x == 0));
    let twins = maglev_table(&[(vec![100], 1), (vec![100], 1)]);
    let first = twins.iter().filter(|&&x| x == 0).count();
    assert!((510..=511).contains(&first), "two equal twins split the slots: {first}");
}

/// docs/design.md: EL = 16 + (hash rotated by 16 bits) mod (2^20 - 16).
#[test]
fn the_entropy_label_is_the_specified_one() {
    assert_eq!(entropy_label(0), 16);
    assert_eq!(entropy_label(0x0001_0000), 17, "the halves swap: 0x0001_0000 -> 1");
    assert_eq!(entropy_label(0x0000_0001), 16 + 0x1_0000);
    assert_eq!(entropy_label(0xffff_ffff), 16 + 0xffff_ffff % 0xf_fff0);
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..10_000 {
        let el = entropy_label(rng.random());
        assert!((16..=Label::MAX).contains(&el), "{el}");
    }
}
