//! The spool against a model (as vector checks its disk buffer): random sequences of
//! appends, acknowledgements, reads and restarts must leave the spool holding exactly what
//! a plain in-memory queue would.

use std::collections::VecDeque;

use proptest::prelude::*;
use secumon_transport::Spool;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    /// Acknowledge the n-th pending batch (modulo the queue length).
    Ack(usize),
    Read {
        after_index: usize,
        limit: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Append),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => (any::<usize>(), 1usize..10).prop_map(|(after_index, limit)| Op::Read { after_index, limit }),
        1 => Just(Op::Reopen),
    ]
}

/// Large enough that nothing is ever dropped for space in these runs.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn spool_matches_a_queue(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), MAX_BYTES).unwrap();
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut next = 1u64;
        for op in ops {
            match op {
                Op::Append(payload) => {
                    prop_assert_eq!(spool.next_sequence(), next);
                    spool.append(next, &payload).unwrap();
                    model.push_back((next, payload));
                    next += 1;
                }
                Op::Ack(n) if !model.is_empty() => {
                    let sequence = model[n % model.len()].0;
                    spool.ack(sequence);
                    model.retain(|(s, _)| *s > sequence);
                }
                Op::Ack(_) => {}
                Op::Read { after_index, limit } => {
                    let after = if model.is_empty() { 0 } else { model[after_index % model.len()].0 };
                    let expected: Vec<_> = model.iter().filter(|(s, _)| *s > after).take(limit).cloned().collect();
                    prop_assert_eq!(spool.read_pending(after, limit).unwrap(), expected);
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(dir.path(), MAX_BYTES).unwrap();
                }
            }
            let stats = spool.stats();
            prop_assert_eq!(stats.pending_batches, model.len() as u64);
            prop_assert_eq!(stats.next_sequence, next);
            prop_assert_eq!(stats.corrupt_records, 0);
        }
        let everything: Vec<_> = model.iter().cloned().collect();
        prop_assert_eq!(spool.read_pending(0, usize::MAX).unwrap(), everything);
    }
}
