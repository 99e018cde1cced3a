//! The renderings of `stats` and `status`, one module per table.

mod render_order_tests {
    use crate::order::{OrderId, Priority};
    use crate::stats::*;

    #[test]
    fn every_value_of_an_order_starts_in_one_column_and_an_empty_one_reads_as_a_dash() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let state = OrderState {
            order_id: OrderId::parse("ORD-1").unwrap(),
            status: Status::Sent,
            priority: Priority::High,
            attempts: 1,
            last_error: Some(String::new()),
            ses_message_id: Some("m-1".into()),
            first_seen_at: at,
            updated_at: at,
            sent_at: Some(at),
            lease_until: None,
            parked_at: None,
            parked_note: None,
            payload_removed_at: None,
            delivery: crate::ledger::Delivery {
                state: Some(crate::ses_event::DeliveryState::Delivered),
                detail: Some(String::new()),
                at: Some(at),
                send_event: None,
                duplicate_message_ids: vec!["m-2".into(), "m-3".into()],
            },
            customer_status: crate::ledger::CustomerStatus::Confirmed,
        };
        let out = render_order(&state);
        let value_column = |l: &str| l.find(':').map(|c| c + 1 + l[c + 1..].len() - l[c + 1..].trim_start().len());
        let columns: std::collections::BTreeSet<_> = out.lines().map(value_column).collect();
        assert_eq!(columns.len(), 1, "{out}");
        assert_eq!(out.lines().count(), 15, "{out}");
        assert!(out.lines().any(|l| l.starts_with("duplicate_mails:") && l.ends_with(" m-2 m-3")), "{out}");
        for label in ["last_error:", "delivery_detail:", "lease_until:"] {
            assert!(out.lines().any(|l| l.starts_with(label) && l.ends_with(" -")), "{label} {out}");
        }
    }
}

mod totals_tests {
    use crate::ledger::{Percentiles, PriorityStats};
    use crate::order::Priority;
    use crate::stats::*;

    fn priority(priority: Priority, sent: u64, failed: u64, sending: u64, oldest: Option<f64>) -> PriorityStats {
        let by_status = Status::ALL
            .into_iter()
            .map(|s| {
                let n = match s {
                    Status::Sent => sent,
                    Status::Failed => failed,
                    Status::Sending => sending,
                    Status::Rejected | Status::Abandoned => 1,
                };
                (s, n)
            })
            .collect();
        PriorityStats {
            priority,
            by_status,
            pending: failed + sending,
            oldest_unsent_age_seconds: oldest,
            sent_last_hour: sent / 2,
            time_to_send_seconds: Percentiles { p50: Some(1.0), p95: Some(2.0), p99: Some(3.0) },
        }
    }

    #[test]
    fn totals_add_up_the_priorities_and_keep_the_oldest_unsent_age() {
        let stats = LedgerStats {
            priorities: vec![
                priority(Priority::High, 10, 1, 2, Some(30.0)),
                priority(Priority::Normal, 40, 3, 0, Some(90.5)),
            ],
        };
        let t = totals(&stats);
        let n = |s: Status| t.by_status[&s];
        assert_eq!((n(Status::Sent), n(Status::Failed), n(Status::Sending)), (50, 4, 2));
        assert_eq!((n(Status::Rejected), n(Status::Abandoned)), (2, 2));
        assert_eq!((t.pending, t.sent_last_hour, t.oldest_unsent_age_seconds), (6, 25, Some(90.5)));
        let table = render_table(&stats);
        let total = table.lines().find(|l| l.starts_with("total")).expect("a total row");
        let cells: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(cells, ["total", "50", "2", "4", "2", "2", "6", "1.5min", "25", "-", "-", "-"], "{table}");
        let empty = totals(&LedgerStats { priorities: vec![priority(Priority::High, 0, 0, 0, None)] });
        assert_eq!((empty.pending, empty.oldest_unsent_age_seconds), (0, None));
    }
}

mod queue_table_tests {
    use crate::queues::QueueDepth;
    use crate::stats::render_queues;

    fn depth(url: &str, visible: u64) -> QueueDepth {
        QueueDepth {
            queue_url: url.to_owned(),
            visible,
            in_flight: 1,
            deferred: 2,
            dlq_url: None,
            dlq_visible: Some(0),
        }
    }

    #[test]
    fn queues_show_by_name_and_long_names_keep_the_columns_aligned() {
        let long =
            "https://sqs.eu-west-1.amazonaws.com/123456789012/order-confirmation-production-orders-high-priority";
        let table = render_queues(&[depth(long, 12345), depth("http://localhost:4566/000000000000/normal", 7)]);
        assert!(!table.contains("https://"), "names, not URLs: {table}");
        assert!(table.contains("order-confirmation-production-orders-high-priority "), "{table}");
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{table}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "every row as wide as the header: {table}");
    }
}

mod delivery_table_tests {
    use crate::stats::render_delivery;

    #[test]
    fn delivery_rows_line_up_under_their_header() {
        let rows = vec![
            ("high".to_owned(), Some("bounced".to_owned()), 1),
            ("high".to_owned(), None, 1),
            ("normal".to_owned(), Some("delivered".to_owned()), 12345),
        ];
        let duplicates = vec![("normal".to_owned(), 3)];
        let table = render_delivery(&crate::ledger::delivery_stats_from_rows(&rows, &duplicates));
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "every row as wide as the header:\n{table}");
        assert!(lines[1].starts_with("high ") && lines[1].ends_with("50.00%"), "{table}");
        assert!(lines[2].ends_with("0.00%") && lines[2].contains("12345"), "{table}");
        // 12,347 sends, one hard bounce.
        assert!(lines[3].starts_with("total ") && lines[3].contains("12347") && lines[3].ends_with("0.01%"), "{table}");
        let column = |line: &str| line.split_whitespace().rev().nth(1).map(str::to_owned);
        assert_eq!(column(lines[0]).as_deref(), Some("duplicates"), "{table}");
        let duplicates: Vec<_> = lines[1..].iter().map(|l| column(l)).collect();
        assert_eq!(
            duplicates,
            [Some("0".into()), Some("3".into()), Some("3".into())],
            "per priority and in the total:\n{table}"
        );
    }
}
