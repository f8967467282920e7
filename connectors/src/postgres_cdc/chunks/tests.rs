use super::*;

#[test]
fn a_chunk_saw_the_transactions_committed_before_its_snapshot() {
    let seen = Seen::parse("100:105:101,103").unwrap();
    for (xid, saw) in [
        (99, true),
        (100, true),
        (101, false),
        (102, true),
        (103, false),
        (104, true),
        (105, false),
        (200, false),
    ] {
        assert_eq!(seen.saw(xid), saw, "{xid}");
    }
    // 64-bit ids, cut to the 32 bits pgoutput gives, across a wrap.
    let high = (5u64 << 32) + u64::from(u32::MAX) - 1;
    let seen = Seen::parse(&format!("{high}:{}:", high + 4)).unwrap();
    assert!(seen.saw(u32::MAX - 2));
    assert!(seen.saw(u32::MAX));
    assert!(seen.saw(0), "after the wrap, before xmax");
    assert!(!seen.saw(2));
    assert_eq!(Seen::parse("nonsense"), None);
}

#[test]
fn a_signal_is_acted_on_once_by_its_stream_position() {
    let mut p = Progress::default();
    let at = (7u128 << 64) | 3;
    assert!(p.act_on(Some(at)));
    // Streamed again after a restart: at or before the last one.
    assert!(!p.act_on(Some(at)));
    assert!(!p.act_on(Some(at - 1)));
    let mut back = Progress::from_text(&p.to_text()).unwrap_or_default();
    assert!(!back.act_on(Some(at)));
    // A later signal, whatever its id, is acted on.
    assert!(back.act_on(Some(at + 1)));
    assert!(back.act_on(None));
    // Progress kept before signals were recorded still reads.
    let old = Progress::from_text(r#"{"tables":[]}"#).unwrap_or_default();
    assert_eq!(old.last_signal, None);
}

#[test]
fn progress_keeps_to_the_selected_tables_and_round_trips() {
    let mut p = Progress {
        last_signal: Some("18446744073709551617".into()),
        tables: vec![
            TableProgress {
                table: "public.a".into(),
                after: Some(vec![Some("5".into()), None]),
                upper: Some(vec![Some("9".into()), Some("x".into())]),
                done: false,
                rows: 4,
                since: Some("10:12:10,11".into()),
            },
            TableProgress {
                table: "public.gone".into(),
                done: true,
                ..TableProgress::default()
            },
        ],
    };
    assert_eq!(Progress::from_text(&p.to_text()), Some(p.clone()));
    p.tables.retain(|t| t.table != "public.gone");
    assert!(!p.complete());
}

#[test]
fn literals_quote_and_keep_nulls() {
    assert_eq!(
        literals(&[Some("it's".into()), None, Some("5".into())]),
        "'it''s', NULL, '5'"
    );
}
