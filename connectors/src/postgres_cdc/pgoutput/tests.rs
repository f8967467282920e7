use super::*;
use proptest::prelude::*;

fn datum() -> impl Strategy<Value = Datum> {
    prop_oneof![
        Just(Datum::Null),
        Just(Datum::Unchanged),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Datum::Text),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Datum::Binary),
    ]
}

fn tuple() -> impl Strategy<Value = Tuple> {
    proptest::collection::vec(datum(), 0..8)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_ \"';é]{0,12}"
}

fn old() -> impl Strategy<Value = OldTuple> {
    (
        prop_oneof![Just(OldKind::Key), Just(OldKind::Full)],
        tuple(),
    )
        .prop_map(|(kind, tuple)| OldTuple { kind, tuple })
}

fn message() -> impl Strategy<Value = Message> {
    let column = (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(key, name, type_oid, type_modifier)| Column {
            key,
            name,
            type_oid,
            type_modifier,
        },
    );
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(
            |(final_lsn, commit_time_micros, xid)| Message::Begin {
                final_lsn,
                commit_time_micros,
                xid
            }
        ),
        (any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
            |(commit_lsn, end_lsn, commit_time_micros)| {
                Message::Commit {
                    commit_lsn,
                    end_lsn,
                    commit_time_micros,
                }
            }
        ),
        (
            any::<u32>(),
            name(),
            name(),
            any::<u8>(),
            proptest::collection::vec(column, 0..6)
        )
            .prop_map(|(id, namespace, name, replica_identity, columns)| {
                Message::Relation(Relation {
                    id,
                    namespace,
                    name,
                    replica_identity,
                    columns,
                })
            }),
        (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| Message::Type {
            oid,
            namespace,
            name
        }),
        (any::<u32>(), tuple()).prop_map(|(relation, new)| Message::Insert { relation, new }),
        (any::<u32>(), proptest::option::of(old()), tuple())
            .prop_map(|(relation, old, new)| Message::Update { relation, old, new }),
        (any::<u32>(), old()).prop_map(|(relation, old)| Message::Delete { relation, old }),
        (
            proptest::collection::vec(any::<u32>(), 0..5),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(relations, cascade, restart_identity)| Message::Truncate {
                relations,
                cascade,
                restart_identity
            }),
        (
            any::<bool>(),
            any::<u64>(),
            name(),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(transactional, lsn, prefix, content)| {
                Message::Logical {
                    transactional,
                    lsn,
                    prefix,
                    content,
                }
            }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        prop_assert_eq!(decode(&encode::message(&m)), Ok(m));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn every_truncation_of_a_message_is_an_error(m in message(), cut in any::<prop::sample::Index>()) {
        let bytes = encode::message(&m);
        let at = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..at]).is_err());
    }
}

#[test]
fn an_update_without_old_values_has_no_before() {
    // U, relation 7, N, one text column "x"
    let bytes = [b'U', 0, 0, 0, 7, b'N', 0, 1, b't', 0, 0, 0, 1, b'x'];
    assert_eq!(
        decode(&bytes),
        Ok(Message::Update {
            relation: 7,
            old: None,
            new: vec![Datum::Text(b"x".to_vec())]
        })
    );
}

#[test]
fn unknown_tags_and_trailing_bytes_are_errors() {
    assert!(decode(b"Z").is_err());
    let mut bytes = encode::message(&Message::Insert {
        relation: 1,
        new: vec![],
    });
    bytes.push(0);
    assert!(
        decode(&bytes)
            .unwrap_err()
            .to_string()
            .contains("left over")
    );
}
