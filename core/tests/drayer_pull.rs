//! The Drayer pull machine driven directly, in fake time: no store, no
//! source, no clock. Each rule of `keyway_core::drayer::pull` — paging to
//! an empty page, the cursor that must move, the byte budget, the
//! deadline, signatures, `crdr` repairs, partial mirrors — and what a
//! hostile source (bad signatures, broken links, endless or repeating
//! pages, oversize records) gets.
#![allow(clippy::unwrap_used)]

use core::time::Duration;

use keyway_core::drayer::pull::{
    Event, MAX_NEWEST, MAX_REPAIRS, MAX_RESTARTS, Mode, OutOfTurn, PAGE, PageRecord, Pull,
    PullError, PullLimits, Pulled, RECORD_OVERHEAD, Request, Stop, record_size,
};
use keyway_core::drayer::{Meta, RecordError, hash};
use keyway_core::time::Instant;

const T0: i64 = 1_600_000_000_000_000;

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

/// `n` records modified one µs apart after `after`, each of `size` bytes.
fn records(after: i64, n: usize, size: u64) -> Vec<PageRecord> {
    (1..=n as i64)
        .map(|i| PageRecord {
            modified: after + i,
            size,
        })
        .collect()
}

fn meta(id: u64, modified: i64, prevchange: i64) -> Meta {
    Meta::new(
        id,
        modified,
        modified,
        id - 1,
        prevchange,
        "k",
        "obj",
        hash(b"v"),
    )
}

/// The request the pull makes next.
fn next_request(pull: &mut Pull) -> Option<Request> {
    pull.poll_transmit(at(0), &mut [0; 64]).map(|t| t.request)
}

/// Takes a page whose signatures all check, and applies it all.
fn take_all(pull: &mut Pull, now: Instant, page: &[PageRecord]) -> usize {
    let taken = pull.handle_page(now, page.iter().copied()).unwrap();
    if taken == 0 {
        return 0;
    }
    pull.handle_verified(now, taken, None).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: taken }));
    pull.handle_applied(now, taken, taken, None).unwrap();
    taken
}

fn whole(limits: PullLimits) -> Pull {
    Pull::new(at(0), 0, Mode::Whole, limits)
}

#[test]
fn a_pull_asks_after_the_tip_and_again_until_a_page_comes_back_empty() {
    let mut pull = Pull::new(at(0), T0, Mode::Whole, PullLimits::default());
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: T0 }));
    let full = records(T0, PAGE, 300);
    assert_eq!(take_all(&mut pull, at(1), &full), PAGE);
    let cursor = full[PAGE - 1].modified;
    assert_eq!(
        next_request(&mut pull),
        Some(Request::Page { after: cursor })
    );
    // A page a server cut short by size is not the last (the old in-memory
    // rule stopped here, and so did the original client's).
    let short = records(cursor, 3, 300);
    assert_eq!(take_all(&mut pull, at(2), &short), 3);
    assert_eq!(
        next_request(&mut pull),
        Some(Request::Page { after: cursor + 3 })
    );
    assert_eq!(pull.poll_event(), None, "nothing to do until the answer");
    pull.handle_page(at(3), []).unwrap();
    assert_eq!(
        pull.poll_event(),
        Some(Event::Done(Pulled {
            inserted: PAGE + 3,
            repairs: 0
        }))
    );
    assert!(pull.is_finished());
    assert_eq!(pull.poll_event(), None, "the end is reported once");
    assert_eq!(pull.poll_timeout(), None);
}

#[test]
fn the_next_page_is_asked_for_before_this_one_is_applied() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    let page = records(0, 10, 300);
    assert_eq!(pull.handle_page(at(0), page.iter().copied()), Ok(10));
    // Asked ahead while the page is checked...
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: 10 }));
    // ...but its answer waits until this page is applied.
    assert_eq!(pull.handle_page(at(0), records(10, 1, 300)), Err(OutOfTurn));
    pull.handle_verified(at(0), 10, None).unwrap();
    assert_eq!(pull.handle_page(at(0), records(10, 1, 300)), Err(OutOfTurn));
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 10 }));
    pull.handle_applied(at(0), 10, 7, None).unwrap();
    assert_eq!(pull.handle_page(at(0), records(10, 1, 300)), Ok(1));
}

#[test]
fn a_source_repeating_its_page_ends_the_pull_with_no_progress() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    let page = records(T0, PAGE, 300);
    take_all(&mut pull, at(1), &page);
    assert_eq!(pull.handle_page(at(2), page.iter().copied()), Ok(0));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::NoProgress {
            cursor: T0 + PAGE as i64,
            modified: T0 + 1
        }))
    );
    assert_eq!(next_request(&mut pull), None, "nothing more is asked");
}

#[test]
fn a_page_out_of_order_or_at_the_cursor_is_no_progress() {
    for (page, cursor, modified) in [
        // A record at the time asked after.
        (vec![T0, T0 + 1], T0, T0),
        // A record not after the one before it.
        (vec![T0 + 1, T0 + 5, T0 + 5], T0 + 5, T0 + 5),
        (vec![T0 + 1, T0 + 9, T0 + 3], T0 + 9, T0 + 3),
    ] {
        let mut pull = Pull::new(at(0), T0, Mode::Whole, PullLimits::default());
        let page = page.into_iter().map(|modified| PageRecord {
            modified,
            size: 300,
        });
        assert_eq!(pull.handle_page(at(0), page), Ok(0));
        assert_eq!(
            pull.poll_event(),
            Some(Event::Failed(PullError::NoProgress { cursor, modified })),
            "nothing of such a page is applied"
        );
    }
}

#[test]
fn endless_pages_stop_at_the_byte_budget_keeping_what_fit() {
    let size = record_size(4, 3, 1_000);
    assert_eq!(size, RECORD_OVERHEAD + 1_007);
    let limits = PullLimits {
        max_bytes: 250 * size + size / 2,
        ..PullLimits::default()
    };
    let mut pull = whole(limits);
    let mut cursor = 0;
    let mut applied = 0;
    // A source that never runs out: bounded here, ended by the budget.
    for _ in 0..10 {
        let Some(Request::Page { after }) = next_request(&mut pull) else {
            break;
        };
        assert_eq!(after, cursor);
        let page = records(cursor, PAGE, size);
        let taken = pull.handle_page(at(0), page.iter().copied()).unwrap();
        pull.handle_verified(at(0), taken, None).unwrap();
        assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: taken }));
        pull.handle_applied(at(0), taken, taken, None).unwrap();
        applied += taken;
        cursor = page[taken - 1].modified;
    }
    assert_eq!(applied, 250, "the records that fit are applied");
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::ByteLimit(limits.max_bytes)))
    );
    assert_eq!(next_request(&mut pull), None, "no page past the budget");
}

#[test]
fn an_oversize_record_is_not_applied_and_ends_the_pull() {
    let limits = PullLimits {
        max_bytes: 1 << 20,
        ..PullLimits::default()
    };
    let mut pull = whole(limits);
    let huge = PageRecord {
        modified: 1,
        size: record_size(1, 1, usize::MAX),
    };
    assert_eq!(huge.size, u64::MAX, "sizes saturate");
    assert_eq!(pull.handle_page(at(0), [huge]), Ok(0));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::ByteLimit(1 << 20)))
    );
    assert_eq!(pull.bytes_left(), 1 << 20, "nothing was counted");
}

#[test]
fn a_pull_ends_at_its_deadline_and_not_before() {
    let limits = PullLimits {
        max_time: Duration::from_secs(600),
        ..PullLimits::default()
    };
    let start = at(1_000);
    let mut pull = Pull::new(start, 0, Mode::Whole, limits);
    assert_eq!(pull.poll_timeout(), Some(at(1_600)));
    // Endless pages, one every 10 s of fake time.
    let mut now = start;
    let mut cursor = 0;
    let mut pages = 0;
    while now < at(1_599) {
        pull.handle_timeout(now);
        assert!(!pull.is_finished(), "at {now:?}");
        next_request(&mut pull);
        take_all(&mut pull, now, &records(cursor, PAGE, 300));
        cursor += PAGE as i64;
        pages += 1;
        now += Duration::from_secs(10);
    }
    assert_eq!(pages, 60);
    pull.handle_timeout(Instant::from_micros(1_600_000_000 - 1));
    assert!(!pull.is_finished(), "a µs before the deadline");
    pull.handle_timeout(at(1_600));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::TimeLimit(limits.max_time)))
    );
    assert_eq!(next_request(&mut pull), None);
}

#[test]
fn an_answer_arriving_after_the_deadline_is_not_taken() {
    let limits = PullLimits {
        max_time: Duration::from_secs(5),
        ..PullLimits::default()
    };
    let mut pull = whole(limits);
    next_request(&mut pull);
    assert_eq!(pull.handle_page(at(5), records(0, 10, 300)), Ok(0));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::TimeLimit(limits.max_time)))
    );
}

#[test]
fn a_bad_signature_applies_the_records_before_it_and_ends_the_pull() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    assert_eq!(pull.handle_page(at(0), records(0, 10, 300)), Ok(10));
    // Record 5 (the sixth) is forged: the five before it are applied.
    pull.handle_verified(at(0), 5, Some((6, RecordError::Signature)))
        .unwrap();
    assert_eq!(
        next_request(&mut pull),
        None,
        "no next page after a forgery"
    );
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 5 }));
    pull.handle_applied(at(0), 5, 5, None).unwrap();
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Refused {
            id: 6,
            signature: Some(RecordError::Signature)
        }))
    );
}

#[test]
fn a_forged_first_record_applies_nothing() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    pull.handle_page(at(0), records(0, 3, 300)).unwrap();
    pull.handle_verified(at(0), 0, Some((1, RecordError::Signature)))
        .unwrap();
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Refused {
            id: 1,
            signature: Some(RecordError::Signature)
        })),
        "no Apply event first"
    );
}

#[test]
fn a_broken_link_is_repaired_with_crdr_answers_then_applied() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    pull.handle_page(at(0), records(0, 4, 300)).unwrap();
    pull.handle_verified(at(0), 4, None).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 4 }));
    // Two records go in, the third orphans a local record.
    pull.handle_applied(at(0), 2, 2, Some(Stop::NeedsRepair { id: 3, pdest: 77 }))
        .unwrap();
    assert_eq!(next_request(&mut pull), Some(Request::Crdr { pdest: 77 }));
    let answer = meta(9, 90, 77);
    pull.handle_crdr(at(0), Some(answer)).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 2, to: 4 }));
    assert_eq!(pull.repairs().len(), 1);
    assert_eq!(pull.repairs()[0].pdest, 77);
    assert_eq!(pull.repairs()[0].answer, Some(answer));
    pull.handle_applied(at(0), 2, 1, None).unwrap();
    assert!(
        pull.repairs().is_empty(),
        "answers go once a record applies"
    );
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: 4 }));
    pull.handle_page(at(0), []).unwrap();
    assert_eq!(
        pull.poll_event(),
        Some(Event::Done(Pulled {
            inserted: 3,
            repairs: 1
        }))
    );
}

#[test]
fn a_record_still_broken_after_sixteen_answers_is_refused() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    pull.handle_page(at(0), records(0, 1, 300)).unwrap();
    pull.handle_verified(at(0), 1, None).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 1 }));
    // A source whose answers never mend the link.
    for i in 0..MAX_REPAIRS {
        let pdest = 1_000 - i as i64;
        pull.handle_applied(at(0), 0, 0, Some(Stop::NeedsRepair { id: 1, pdest }))
            .unwrap();
        assert_eq!(next_request(&mut pull), Some(Request::Crdr { pdest }));
        pull.handle_crdr(at(0), None).unwrap();
        assert_eq!(pull.repairs().len(), i + 1);
        assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 1 }));
    }
    pull.handle_applied(at(0), 0, 0, Some(Stop::NeedsRepair { id: 1, pdest: 5 }))
        .unwrap();
    assert_eq!(next_request(&mut pull), None, "no seventeenth answer");
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Refused {
            id: 1,
            signature: None
        }))
    );
}

#[test]
fn a_record_the_store_cannot_follow_restarts_the_pull_after_its_tip() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    pull.handle_page(at(0), records(0, 5, 300)).unwrap();
    pull.handle_verified(at(0), 5, None).unwrap();
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: 5 }));
    assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 5 }));
    // The source was written between its pages (or its `crdr` answers):
    // the third record follows one the store does not hold.
    pull.handle_applied(at(0), 2, 2, Some(Stop::Behind { id: 3, tip: 2 }))
        .unwrap();
    assert_eq!(pull.poll_event(), None, "the rest of the page is dropped");
    assert_eq!(
        next_request(&mut pull),
        Some(Request::Page { after: 2 }),
        "asked again after the store's tip"
    );
    assert_eq!(next_request(&mut pull), None, "nothing else is asked");
    // The source's state now: the pull goes on from there.
    assert_eq!(take_all(&mut pull, at(1), &records(2, 4, 300)), 4);
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: 6 }));
    pull.handle_page(at(1), []).unwrap();
    assert_eq!(
        pull.poll_event(),
        Some(Event::Done(Pulled {
            inserted: 6,
            repairs: 0
        }))
    );
}

#[test]
fn a_source_that_keeps_changing_stops_the_pull_after_the_restarts() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    for restart in 0..=MAX_RESTARTS {
        let tip = i64::from(restart);
        pull.handle_page(at(0), records(tip, 3, 300)).unwrap();
        pull.handle_verified(at(0), 3, None).unwrap();
        assert_eq!(pull.poll_event(), Some(Event::Apply { from: 0, to: 3 }));
        // One record applies each time; the next cannot be followed.
        pull.handle_applied(
            at(0),
            1,
            1,
            Some(Stop::Behind {
                id: 2,
                tip: tip + 1,
            }),
        )
        .unwrap();
        if restart < MAX_RESTARTS {
            assert_eq!(
                next_request(&mut pull),
                Some(Request::Page { after: tip + 1 })
            );
        }
    }
    assert_eq!(next_request(&mut pull), None, "no restart beyond the bound");
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Unsettled {
            restarts: MAX_RESTARTS
        }))
    );
    assert!(pull.is_finished());
}

#[test]
fn a_record_the_store_refuses_ends_the_pull() {
    let mut pull = whole(PullLimits::default());
    next_request(&mut pull);
    pull.handle_page(at(0), records(0, 5, 300)).unwrap();
    pull.handle_verified(at(0), 5, None).unwrap();
    pull.poll_event();
    // A gap in the modification chain, or a fork: the store says no.
    pull.handle_applied(at(0), 3, 3, Some(Stop::Refused { id: 4 }))
        .unwrap();
    assert_eq!(next_request(&mut pull), None, "the page asked ahead is not");
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Refused {
            id: 4,
            signature: None
        }))
    );
}

#[test]
fn a_partial_mirror_starts_from_the_newest_keeps_n_and_takes_a_patch() {
    let mut pull = Pull::new(at(0), 0, Mode::Newest { keep: 3 }, PullLimits::default());
    assert_eq!(next_request(&mut pull), Some(Request::Newest { n: 3 }));
    assert_eq!(pull.handle_newest(at(0), Some(records(T0, 3, 300))), Ok(3));
    assert_eq!(pull.poll_event(), Some(Event::StartPartial { count: 3 }));
    pull.handle_started(at(0), T0 + 3).unwrap();
    assert_eq!(
        next_request(&mut pull),
        Some(Request::Page { after: T0 + 3 })
    );
    take_all(&mut pull, at(0), &records(T0 + 3, 2, 300));
    next_request(&mut pull);
    pull.handle_page(at(0), []).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::KeepNewest { keep: 3 }));
    pull.handle_kept(at(0), T0 + 2).unwrap();
    assert_eq!(
        next_request(&mut pull),
        Some(Request::Crdr { pdest: T0 + 2 })
    );
    let patch = meta(4, T0 + 3, T0 + 1);
    pull.handle_crdr(at(0), Some(patch)).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::RefreshOldest(patch)));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Done(Pulled {
            inserted: 5,
            repairs: 0
        }))
    );
}

#[test]
fn a_partial_mirror_with_records_pulls_like_any_other_and_keeps_at_least_one() {
    let mut pull = Pull::new(at(0), T0, Mode::Newest { keep: 0 }, PullLimits::default());
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: T0 }));
    pull.handle_page(at(0), []).unwrap();
    assert_eq!(pull.poll_event(), Some(Event::KeepNewest { keep: 1 }));
    // Holding the whole chain (back pointer 0): no patch to ask for.
    pull.handle_kept(at(0), 0).unwrap();
    assert_eq!(next_request(&mut pull), None);
    assert_eq!(pull.poll_event(), Some(Event::Done(Pulled::default())));
}

#[test]
fn a_source_that_cannot_list_its_newest_cannot_start_a_partial_mirror() {
    let mut pull = Pull::new(at(0), 0, Mode::Newest { keep: 5 }, PullLimits::default());
    next_request(&mut pull);
    assert_eq!(pull.handle_newest(at(0), None::<[PageRecord; 0]>), Ok(0));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::Unsupported))
    );
}

#[test]
fn newest_records_over_the_budget_start_nothing() {
    let limits = PullLimits {
        max_bytes: 1_000,
        ..PullLimits::default()
    };
    let mut pull = Pull::new(at(0), 0, Mode::Newest { keep: 5 }, limits);
    next_request(&mut pull);
    assert_eq!(pull.handle_newest(at(0), Some(records(0, 5, 300))), Ok(0));
    assert_eq!(
        pull.poll_event(),
        Some(Event::Failed(PullError::ByteLimit(1_000)))
    );
}

#[test]
fn inputs_out_of_turn_change_nothing() {
    let mut pull = whole(PullLimits::default());
    assert_eq!(pull.handle_verified(at(0), 1, None), Err(OutOfTurn));
    assert_eq!(pull.handle_applied(at(0), 1, 1, None), Err(OutOfTurn));
    assert_eq!(pull.handle_crdr(at(0), None), Err(OutOfTurn));
    assert_eq!(pull.handle_started(at(0), 5), Err(OutOfTurn));
    assert_eq!(pull.handle_kept(at(0), 5), Err(OutOfTurn));
    assert_eq!(
        pull.handle_newest(at(0), Some(records(0, 1, 1))),
        Err(OutOfTurn)
    );
    assert_eq!(next_request(&mut pull), Some(Request::Page { after: 0 }));
    assert_eq!(pull.poll_event(), None);
    assert_eq!(take_all(&mut pull, at(0), &records(0, 2, 300)), 2);
}

#[test]
fn requests_are_written_as_paths_under_the_stream() {
    let path = |request: Request, values: bool| {
        let mut buf = [0u8; 48];
        let n = request.write_path(values, &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    assert_eq!(
        path(Request::Page { after: T0 }, true),
        "newRecords/1600000000000000"
    );
    assert_eq!(
        path(Request::Page { after: i64::MIN }, false),
        "newRecords/-9223372036854775808?values=0"
    );
    assert_eq!(path(Request::Crdr { pdest: -5 }, true), "crdr/-5");
    assert_eq!(
        path(Request::Newest { n: usize::MAX }, true),
        format!("newest/{MAX_NEWEST}")
    );
    assert_eq!(
        Request::Crdr { pdest: 1 }.write_path(true, &mut [0; 5]),
        None
    );
    // A buffer too small still says which request.
    let mut pull = whole(PullLimits::default()).without_values();
    let transmit = pull.poll_transmit(at(0), &mut [0; 4]).unwrap();
    assert_eq!(
        (transmit.request, transmit.len),
        (Request::Page { after: 0 }, 0)
    );
    let mut pull = whole(PullLimits::default()).without_values();
    let mut buf = [0u8; 48];
    let transmit = pull.poll_transmit(at(0), &mut buf).unwrap();
    assert_eq!(&buf[..transmit.len], b"newRecords/0?values=0");
}
