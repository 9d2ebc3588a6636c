//! Placement decisions and the CPU reading, without Redis (the process tests in
//! `sfu/tests/cluster.rs` cover the rest).

use super::*;

fn node(id: &str, region: &str, participants: usize, draining: bool) -> NodeEntry {
    NodeEntry {
        id: id.into(),
        region: region.into(),
        url: format!("http://{id}:8080"),
        media: Vec::new(),
        cpu: 0.0,
        participants,
        rooms: 0,
        draining,
        full: false,
        busy: false,
    }
}

fn busy(n: NodeEntry) -> NodeEntry {
    NodeEntry { busy: true, ..n }
}

#[test]
fn a_node_is_busy_after_a_few_seconds_over_its_cpu_limit_not_after_its_start() {
    let start = Instant::now();
    let mut sample = CpuSample::default();
    let mut cpu = 0.0;
    let mut busy = Vec::new();
    // Cores used in each second: the start-up, idle, then a busy stretch, then idle.
    for (second, cores) in [1.5, 0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0]
        .iter()
        .enumerate()
    {
        sample.record(start + Duration::from_secs(second as u64), cpu);
        cpu += cores;
        busy.push(sample.busy(50));
    }
    sample.record(start + Duration::from_secs(10), cpu);
    busy.push(sample.busy(50));
    assert!((sample.cores - 0.0).abs() < 1e-9);
    // The start-up second is not counted; 0.9 cores against a 50 % limit count from the
    // second reading of them, and the first idle reading after them ends it.
    assert_eq!(
        busy,
        [false, false, false, false, false, true, true, true, false, false, false],
    );
    assert!(!sample.busy(0), "no limit");
}

#[test]
fn a_busy_node_takes_joins_only_when_no_other_node_can() {
    // New rooms: the least loaded node that is not busy, else the least loaded busy one.
    let nodes = [busy(node("a", "eu", 0, false)), node("b", "eu", 9, false)];
    assert_eq!(choose(&nodes, None).unwrap().id, "b");
    assert_eq!(choose(&nodes, Some("eu")).unwrap().id, "b");
    let all_busy = [busy(node("a", "", 5, false)), busy(node("b", "", 2, false))];
    assert_eq!(
        choose(&all_busy, None).unwrap().id,
        "b",
        "all busy: as before"
    );
    // A busy owner under the room's per-node limit sends the join to a member, else to a
    // new node; when every node is busy, the owner takes it as it would without the limit.
    let members = vec![("a".to_owned(), 3), ("b".to_owned(), 5)];
    let nodes = [
        busy(node("a", "", 3, false)),
        node("b", "", 5, false),
        node("c", "", 0, false),
    ];
    let pick = |nodes: &[NodeEntry], limit| {
        choose_member("a", &members, nodes, None, limit).map(|n| n.id.clone())
    };
    assert_eq!(
        pick(&nodes, 10).as_deref(),
        Some("b"),
        "a member under the limit"
    );
    assert_eq!(pick(&nodes, 5).as_deref(), Some("c"), "b is at the limit");
    let busy_member = [
        busy(node("a", "", 3, false)),
        busy(node("b", "", 5, false)),
        node("c", "", 0, false),
    ];
    assert_eq!(
        pick(&busy_member, 10).as_deref(),
        Some("c"),
        "a calm new node"
    );
    let all_busy = [busy(node("a", "", 3, false)), busy(node("b", "", 5, false))];
    assert_eq!(
        pick(&all_busy, 10).as_deref(),
        Some("a"),
        "all busy: the owner"
    );
}

#[test]
fn the_least_loaded_open_node_takes_a_room_preferring_the_region() {
    let nodes = [
        node("a", "eu", 10, false),
        node("b", "eu", 3, false),
        node("c", "us", 1, false),
        node("d", "us", 0, true),
    ];
    let pick = |region| choose(&nodes, region).map(|n| n.id.as_str());
    assert_eq!(
        pick(None),
        Some("c"),
        "least loaded, the draining one skipped"
    );
    assert_eq!(pick(Some("eu")), Some("b"), "least loaded in the region");
    assert_eq!(pick(Some("ap")), Some("c"), "no node there: anywhere");
    assert_eq!(choose(&[node("x", "", 0, true)], None), None);
    let full = NodeEntry {
        full: true,
        ..node("c", "us", 1, false)
    };
    let with_full = [node("a", "eu", 10, false), full];
    assert_eq!(
        choose(&with_full, Some("us")).unwrap().id,
        "a",
        "a full node takes no new room, even in the region asked for"
    );
    let tie = [node("b", "", 1, false), node("a", "", 1, false)];
    assert_eq!(choose(&tie, None).unwrap().id, "a", "ties broken by id");
}

#[test]
fn a_room_s_limit_counts_its_participants_on_every_node() {
    let members = |counts: &[usize]| -> Vec<(String, usize)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("n{i}"), *n))
            .collect()
    };
    // (participants on each node, the room's limit, refused)
    let table: &[(&[usize], u32, bool)] = &[
        (&[], 0, false),
        (&[500, 500], 0, false),
        (&[], 1, false),
        (&[3], 4, false),
        (&[3, 0], 4, false),
        (&[4], 4, true),
        (&[2, 2], 4, true),
        (&[1, 1, 1], 4, false),
        (&[1, 2, 1], 4, true),
        (&[3, 3], 4, true),
    ];
    for (counts, limit, refused) in table {
        let e = room_full(&members(counts), *limit);
        assert_eq!(e.is_some(), *refused, "{counts:?} limit {limit}");
        if let Some(e) = e {
            assert_eq!(e.code, ErrorCode::RoomFull);
            assert!(e.message.contains(&limit.to_string()), "{}", e.message);
        }
    }
}

#[test]
fn a_room_full_on_its_node_spreads_to_members_then_to_new_nodes() {
    let nodes = [
        node("a", "eu", 40, false),
        node("b", "eu", 5, false),
        node("c", "us", 0, false),
        node("d", "us", 0, true),
    ];
    let members = |m: &[(&str, usize)]| -> Vec<(String, usize)> {
        m.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect()
    };
    let pick = |m: &[(&str, usize)], region, limit| {
        choose_member("a", &members(m), &nodes, region, limit).map(|n| n.id.as_str())
    };
    // (members and their participants of the room, region, limit) -> node
    type Row<'a> = (
        &'a [(&'a str, usize)],
        Option<&'a str>,
        usize,
        Option<&'a str>,
    );
    let table: &[Row] = &[
        (&[("a", 3)], None, 10, Some("a")),
        (&[("a", 3)], None, 0, Some("a")),
        (&[("a", 10)], None, 10, Some("c")),
        (&[("a", 10), ("b", 4)], None, 10, Some("b")),
        (&[("a", 10), ("b", 10)], None, 10, Some("c")),
        (&[("a", 10), ("b", 4), ("c", 2)], None, 10, Some("c")),
        (&[("a", 3)], Some("us"), 10, Some("c")),
        (&[("a", 3), ("c", 1)], Some("us"), 10, Some("c")),
        (&[("a", 3)], Some("eu"), 10, Some("a")),
        (&[("a", 3)], Some("ap"), 10, Some("a")),
        (&[("a", 10), ("b", 10), ("c", 10)], None, 10, None),
    ];
    for (i, (m, region, limit, want)) in table.iter().enumerate() {
        assert_eq!(pick(m, *region, *limit), *want, "row {i}");
    }
    // A full or draining owner sends the join elsewhere even under the limit.
    let full_owner = [
        NodeEntry {
            full: true,
            ..node("a", "eu", 40, false)
        },
        node("b", "eu", 5, false),
    ];
    let m = members(&[("a", 1)]);
    assert_eq!(
        choose_member("a", &m, &full_owner, None, 10).map(|n| n.id.as_str()),
        Some("b")
    );
}

#[test]
fn websocket_urls_follow_the_scheme() {
    assert_eq!(ws_url("http://10.0.0.2:8080"), "ws://10.0.0.2:8080/ws");
    assert_eq!(
        ws_url("https://sfu-2.example.com/"),
        "wss://sfu-2.example.com/ws"
    );
}

#[test]
fn a_join_that_never_came_keeps_the_time_it_was_first_seen() {
    let t0 = Instant::now();
    let mut seen = HashMap::new();
    note_pending(&mut seen, vec!["big".into()], t0);
    // Still listed at a refresh just past the grace (the one before found it just inside):
    // its time stays, so the next refresh takes it off the list.
    let later = t0 + PENDING_GRACE + Duration::from_millis(5);
    note_pending(&mut seen, vec!["big".into(), "new".into()], later);
    assert_eq!(seen.get("big"), Some(&t0));
    assert_eq!(seen.get("new"), Some(&later));
    // Taken off the list (served, or past its grace): forgotten.
    note_pending(&mut seen, vec!["new".into()], later);
    assert!(!seen.contains_key("big"));
}
