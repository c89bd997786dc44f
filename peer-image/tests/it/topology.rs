use std::time::Duration;

use crate::util::*;

/// A-B-C-A: one create settles with a bounded number of messages, then only summaries move.
#[test]
fn triangle_single_create_settles_without_loop() {
    let mut c = Cluster::new(3, &[(0, 1), (1, 2), (2, 0)]);
    c.start_all();
    let before = c.wait_quiescent(Duration::from_millis(800));
    c.peers[0].write("loop.txt", b"once");
    c.wait_trees(&Cluster::tree_of(&[("loop.txt", b"once")]));
    let settled = c.wait_quiescent(Duration::from_millis(1500));
    let used = settled - before;
    eprintln!("triangle: {used} non-summary messages and changes for one create");
    // 1 local change + 2 applies, hints and pulls along 3 edges, each message counted at both
    // ends; a loop would be unbounded.
    assert!(used <= 60.0, "too much activity for one create: {used}");
    // Flat for several more anti-entropy rounds while summaries keep flowing.
    let summaries = |c: &Cluster| -> f64 {
        c.peers
            .iter()
            .map(|p| p.metrics().sum("syncpeer_messages_sent_total", &[("kind", "summary")]))
            .sum()
    };
    let s0 = summaries(&c);
    // 3 peers x 2 neighbours: 18 more summaries is at least 3 rounds on every link.
    wait_until("more summary rounds", TIMEOUT, || summaries(&c) >= s0 + 18.0);
    assert_eq!(c.activity(), settled, "non-summary counters moved after quiescence");
    let m: Vec<Metrics> = c.peers.iter().map(|p| p.metrics()).collect();
    assert_eq!(m[0].sum("syncpeer_local_changes_total", &[]), 1.0);
    assert_eq!(m[1].sum("syncpeer_local_changes_total", &[]), 0.0);
    assert_eq!(m[2].sum("syncpeer_local_changes_total", &[]), 0.0);
    assert_eq!(m[1].sum("syncpeer_versions_applied_total", &[]), 1.0);
    assert_eq!(m[2].sum("syncpeer_versions_applied_total", &[]), 1.0);
    assert_eq!(m[0].sum("syncpeer_versions_applied_total", &[]), 0.0);
}

/// p0-p1-p2-p3: changes relay over several hops, in both directions.
#[test]
fn four_peer_line_relays_multi_hop() {
    let mut c = Cluster::new(4, &[(0, 1), (1, 2), (2, 3)]);
    c.start_all();
    c.peers[0].write("from-0.txt", b"zero");
    c.wait_trees(&Cluster::tree_of(&[("from-0.txt", b"zero")]));
    c.peers[3].write("from-0.txt", b"edited at the far end");
    c.peers[3].write("sub/from-3.txt", b"three");
    c.wait_trees(&Cluster::tree_of(&[
        ("from-0.txt", b"edited at the far end"),
        ("sub/from-3.txt", b"three"),
    ]));
    c.peers[1].remove("sub/from-3.txt");
    c.wait_trees(&Cluster::tree_of(&[("from-0.txt", b"edited at the far end")]));
    // p3 is not p0's neighbour: everything it got came through p2.
    let m3 = c.peers[3].metrics();
    assert_eq!(m3.sum("syncpeer_versions_applied_total", &[]), 2.0);
    assert!(m3.sum("syncpeer_bytes_received_total", &[("peer", "p2"), ("kind", "blob")]) >= 1.0);
    assert!(
        !c.peers[0].sync_dir().join("sub").exists(),
        "empty folder left after the delete"
    );
}

/// All hints and pulls of every peer (requests and answers), the periodic digests left out.
fn relay_messages(c: &Cluster) -> f64 {
    c.peers
        .iter()
        .map(|p| {
            let m = p.metrics();
            ["hint", "index"]
                .iter()
                .map(|k| m.sum("syncpeer_messages_sent_total", &[("kind", k)]))
                .sum::<f64>()
        })
        .sum()
}

/// Writes `n` files one after another, each from the next peer in turn, each waited for
/// everywhere; returns the relay messages they cost.
fn relay_cost(broadcast: &str, n: usize) -> (f64, f64, Vec<(String, f64)>) {
    let edges: Vec<(usize, usize)> = (0..5).flat_map(|a| (a + 1..5).map(move |b| (a, b))).collect();
    let mut c = Cluster::new(5, &edges);
    for p in &mut c.peers {
        p.extra_yaml = format!("broadcast: {broadcast}\n");
    }
    c.start_all();
    let before = relay_messages(&c);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..n {
        let (path, content) = (format!("f{i}.txt"), format!("from p{}: {i}", i % 5).into_bytes());
        c.peers[i % 5].write(&path, &content);
        files.push((path, content));
        let expected: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        c.wait_trees(&Cluster::tree_of(&expected));
    }
    let used = relay_messages(&c) - before;
    let prunes: f64 = c
        .peers
        .iter()
        .map(|p| p.metrics().sum("syncpeer_tree_prunes_total", &[]))
        .sum();
    let mut kinds = Vec::new();
    for m in ["syncpeer_messages_sent_total", "syncpeer_messages_received_total"] {
        for k in ["hint", "index", "blob", "summary"] {
            let v: f64 = c.peers.iter().map(|p| p.metrics().sum(m, &[("kind", k)])).sum();
            kinds.push((format!("{m}/{k}"), v));
        }
    }
    for m in ["syncpeer_tree_grafts_total", "syncpeer_versions_redundant_total"] {
        kinds.push((m.to_string(), c.peers.iter().map(|p| p.metrics().sum(m, &[])).sum()));
    }
    (used, prunes, kinds)
}

/// In a full mesh, `broadcast: tree` prunes the edges that only repeat news, so the same writes
/// cost clearly fewer hints and pulls than hinting every neighbour (`flood`), and still arrive.
#[test]
fn a_full_mesh_prunes_its_hints_to_a_tree() {
    let (flood, flood_prunes, flood_kinds) = relay_cost("flood", 15);
    let (tree, tree_prunes, tree_kinds) = relay_cost("tree", 15);
    eprintln!("5-peer mesh, 15 writes: flood {flood} relay messages, tree {tree} ({tree_prunes} prunes)");
    for (n, t) in [("flood", &flood_kinds), ("tree", &tree_kinds)] {
        eprintln!("{n}: {t:?}");
    }
    assert_eq!(flood_prunes, 0.0, "flood never prunes");
    assert!(tree_prunes >= 4.0, "tree pruned only {tree_prunes} edges");
    assert!(tree < 0.75 * flood, "tree {tree} is not clearly below flood {flood}");
}

fn pruned(p: &Peer, neighbour: &str) -> bool {
    p.neighbour_flag(neighbour, "pruned")
}

/// A pruned edge comes back when it is the only way news can travel. p0, p1 and p2 form a
/// triangle (p3 hangs off p1, p4 off p2): writes at p0 reach p1 and p2 directly, so the relay
/// between them repeats news and one of them prunes the other. With p0 hung, the leaf behind
/// the pruning side writes: its version can only cross the pruned edge, the digest round makes
/// the other side pull it, and that pull grafts the edge back.
#[test]
fn a_pruned_edge_is_grafted_back_when_it_carries_news() {
    let mut c = Cluster::new(5, &[(0, 1), (1, 2), (2, 0), (1, 3), (2, 4)]);
    c.start_all();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pruning = None;
    for i in 0..30 {
        files.push((format!("p0-{i}.txt"), format!("p0 {i}").into_bytes()));
        let (path, content) = files.last().unwrap();
        c.peers[0].write(path, content);
        let expected: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        c.wait_trees(&Cluster::tree_of(&expected));
        pruning = [(1, 2, 3), (2, 1, 4)]
            .into_iter()
            .find(|(w, o, _)| pruned(&c.peers[*w], &format!("p{o}")));
        if pruning.is_some() {
            break;
        }
    }
    let (w, o, leaf) = pruning.expect("neither p1 nor p2 pruned the other after 30 writes from p0");
    send_signal(&c.peers[0], libc::SIGSTOP);
    c.peers[leaf].write("relayed.txt", b"p0 is hung");
    wait_until("the write crosses the pruned edge", TIMEOUT, || {
        c.peers[o].read("relayed.txt").as_deref() == Some(&b"p0 is hung"[..])
    });
    let grafts = c.peers[w].metrics().sum("syncpeer_tree_grafts_total", &[]);
    send_signal(&c.peers[0], libc::SIGCONT);
    assert!(grafts >= 1.0, "p{w} never grafted p{o} back");
    assert!(!pruned(&c.peers[w], &format!("p{o}")), "p{w} still does not hint p{o}");
    c.wait_converged();
}

fn send_signal(p: &Peer, sig: i32) {
    unsafe {
        libc::kill(p.pid() as i32, sig);
    }
}
