//! Operations on selections (`socketsJoin`, `socketsLeave`,
//! `disconnectSockets`, `fetchSockets`), broadcasts with acknowledgements
//! and server-side emits: on one server, then on two nodes wired together
//! through their cluster messages.

use super::*;

const WAIT: Duration = Duration::from_millis(5000);

/// `n` clients on `/`, with their sockets in connection order.
fn clients(h: &mut H, n: usize) -> (Vec<Peer>, Vec<SocketId>) {
    let peers: Vec<Peer> = (0..n).map(|_| h.init()).collect();
    let ids = h.connections();
    (peers, ids)
}

fn last_event(h: &H, f: impl Fn(&Event) -> bool) -> Option<Event> {
    h.events.iter().rev().find(|e| f(e)).cloned()
}

#[test]
fn selections_join_leave_and_disconnect_locally() {
    let mut h = H::suite();
    let (mut peers, ids) = clients(&mut h, 3);
    h.io.join(ids[0], "a").unwrap();
    h.io.of("/").except("a").sockets_join(&["b", "c"]);
    assert_eq!(h.io.rooms(ids[0]), ["a"]);
    assert_eq!(h.io.rooms(ids[1]), ["b", "c"]);
    assert_eq!(h.io.rooms(ids[2]), ["b", "c"]);
    h.io.of("/").to(ids[1].as_str()).sockets_leave(&["c"]);
    assert_eq!(h.io.rooms(ids[1]), ["b"]);
    // Only the members of `c` are disconnected, with a DISCONNECT each.
    assert_eq!(h.io.of("/").to("c").disconnect_sockets(h.now, false), 1);
    for p in peers.iter_mut() {
        h.sync(p);
    }
    assert_eq!(peers[2].texts(), ["41"]);
    assert!(peers[0].got.is_empty() && peers[1].got.is_empty());
    assert_eq!(h.io.sockets("/").len(), 2);
    // With `close`, the connections end too.
    assert_eq!(h.io.of("/").disconnect_sockets(h.now, true), 2);
    for p in peers.iter_mut().take(2) {
        h.sync(p);
        assert!(p.closed);
    }
    // Nothing went to a cluster: there is none.
    assert_eq!(h.io.poll_cluster(), None);
}

#[test]
fn fetch_sockets_describes_ids_rooms_handshake_and_data() {
    let mut h = H::suite();
    let (_peers, ids) = clients(&mut h, 2);
    h.io.join(ids[1], "r").unwrap();
    h.io.set_data(ids[1], Value::object([("user", Value::from(7))]))
        .unwrap();
    let request = h.io.of("/").to("r").fetch_sockets(h.now, WAIT);
    h.pump();
    let Some(Event::Fetched {
        request: r,
        sockets,
        timed_out,
    }) = last_event(&h, |e| matches!(e, Event::Fetched { .. }))
    else {
        panic!("no answer")
    };
    assert_eq!((r, timed_out), (request, false));
    assert_eq!(sockets.len(), 1);
    let s = &sockets[0];
    assert_eq!(s.id, ids[1].as_str());
    assert_eq!(s.rooms, [ids[1].as_str(), "r"]);
    assert_eq!(s.data["user"].as_u64(), Some(7));
    assert_eq!(s.handshake["query"]["EIO"].as_str(), Some("4"));
    assert_eq!(
        s.handshake["url"].as_str(),
        Some("/socket.io/?EIO=4&transport=websocket")
    );
    assert_eq!(s.handshake["headers"]["host"].as_str(), Some("localhost"));
    assert_eq!(s.handshake["auth"], Value::Object(Vec::new()));
    assert_eq!(h.io.data(ids[0]), Some(&Value::Object(Vec::new())));
}

#[test]
fn a_broadcast_with_acks_collects_every_answer() {
    let mut h = H::suite();
    let (mut peers, ids) = clients(&mut h, 3);
    h.io.join(ids[0], "r").unwrap();
    h.io.join(ids[1], "r").unwrap();
    h.io.join(ids[2], "r").unwrap();
    let request =
        h.io.of("/")
            .to("r")
            .except(ids[2].as_str())
            .emit_with_ack(h.now, WAIT, "q", vec![1.into()])
            .unwrap();
    for p in peers.iter_mut() {
        h.sync(p);
    }
    // One packet, one ack id, for both recipients.
    assert_eq!(peers[0].texts(), [r#"420["q",1]"#]);
    assert_eq!(peers[1].texts(), [r#"420["q",1]"#]);
    assert!(peers[2].got.is_empty());
    h.text(&mut peers[1], r#"430["b"]"#);
    // A second answer from the same client counts once.
    h.text(&mut peers[1], r#"430["again"]"#);
    assert!(last_event(&h, |e| matches!(e, Event::BroadcastAck { .. })).is_none());
    h.text(&mut peers[0], r#"430["a",2]"#);
    let got = last_event(&h, |e| matches!(e, Event::BroadcastAck { .. }));
    assert_eq!(
        got,
        Some(Event::BroadcastAck {
            request,
            answers: vec![vec!["b".into()], vec!["a".into(), 2.into()]],
            timed_out: false,
        })
    );
    // A broadcast to nobody ends at once, with no answers.
    let none =
        h.io.of("/")
            .to("nobody")
            .emit_with_ack(h.now, WAIT, "q", vec![])
            .unwrap();
    h.pump();
    assert_eq!(
        last_event(&h, |e| matches!(e, Event::BroadcastAck { .. })),
        Some(Event::BroadcastAck {
            request: none,
            answers: vec![],
            timed_out: false
        })
    );
}

#[test]
fn a_broadcast_with_acks_times_out_with_the_answers_so_far() {
    let mut h = H::suite();
    let (mut peers, _ids) = clients(&mut h, 2);
    let timeout = Duration::from_millis(100);
    let request =
        h.io.of("/")
            .emit_with_ack(h.now, timeout, "q", vec![])
            .unwrap();
    for p in peers.iter_mut() {
        h.sync(p);
    }
    h.text(&mut peers[0], r#"430[true]"#);
    h.advance(99);
    assert!(last_event(&h, |e| matches!(e, Event::BroadcastAck { .. })).is_none());
    h.advance(1);
    assert_eq!(
        last_event(&h, |e| matches!(e, Event::BroadcastAck { .. })),
        Some(Event::BroadcastAck {
            request,
            answers: vec![vec![true.into()]],
            timed_out: true,
        })
    );
    // A late answer goes nowhere: not an `Ack`, not a second event.
    let before = h.events.len();
    h.text(&mut peers[1], r#"430[false]"#);
    assert_eq!(h.events.len(), before);
}

#[test]
fn a_recipient_that_leaves_is_waited_for_until_the_timeout() {
    // As in the official server, the count is taken when the broadcast
    // leaves: a recipient that disconnects before answering makes the
    // broadcast end at its timeout.
    let mut h = H::suite();
    let (mut peers, _ids) = clients(&mut h, 2);
    let request =
        h.io.of("/")
            .emit_with_ack(h.now, Duration::from_millis(50), "q", vec![])
            .unwrap();
    h.sync(&mut peers[0]);
    h.text(&mut peers[0], "430[1]");
    h.text(&mut peers[1], "41");
    h.advance(50);
    assert_eq!(
        last_event(&h, |e| matches!(e, Event::BroadcastAck { .. })),
        Some(Event::BroadcastAck {
            request,
            answers: vec![vec![1.into()]],
            timed_out: true,
        })
    );
}

#[test]
fn server_side_emits_outside_a_cluster() {
    let mut h = H::suite();
    h.io.server_side_emit("/", "hello", vec![]).unwrap();
    assert_eq!(h.io.poll_cluster(), None);
    let request =
        h.io.server_side_emit_with_ack(h.now, "/", "hello", vec![], WAIT)
            .unwrap();
    h.pump();
    assert_eq!(
        last_event(&h, |e| matches!(e, Event::ServerSideAcks { .. })),
        Some(Event::ServerSideAcks {
            request,
            answers: vec![],
            timed_out: false
        })
    );
    assert_eq!(
        h.io.server_side_emit("/", "connection", vec![]),
        Err(UsageError::ReservedEvent("connection".into()))
    );
}

// ----- two nodes -------------------------------------------------------------

/// Two nodes and the adapter between them: it carries every message to
/// the other node, and tells each request that one node will answer.
struct Pair {
    a: H,
    b: H,
    /// Whether the adapter carries messages (off: a node that is gone).
    up: bool,
    /// Every message that crossed, from `a` (true) or `b`.
    log: Vec<(bool, ClusterMessage)>,
}

fn cluster_config() -> Config {
    suite_config().cluster(true)
}

impl Pair {
    fn new() -> Pair {
        let a = H::new(cluster_config());
        let mut b = H::new(cluster_config());
        // Another seed, so the two nodes' ids differ.
        b.io = Server::new(cluster_config(), Box::new(SeededEntropy::new(4)), b.now);
        b.io.add_namespace("/custom", Admission::AcceptAll);
        Pair {
            a,
            b,
            up: true,
            log: Vec::new(),
        }
    }

    /// Drains both nodes and carries messages until both are quiet;
    /// server-side events are answered with `"node a"` / `"node b"`.
    fn settle(&mut self) {
        loop {
            self.a.pump();
            self.b.pump();
            let mut moved = false;
            for from_a in [true, false] {
                let (src, dst) = if from_a {
                    (&mut self.a, &mut self.b)
                } else {
                    (&mut self.b, &mut self.a)
                };
                while let Some(m) = src.io.poll_cluster() {
                    moved = true;
                    self.log.push((from_a, m.clone()));
                    let request = match &m {
                        ClusterMessage::FetchSockets { request, nsp, .. }
                        | ClusterMessage::ServerSideEmit {
                            request: Some(request),
                            nsp,
                            ..
                        }
                        | ClusterMessage::Broadcast {
                            ack: Some((request, _)),
                            nsp,
                            ..
                        } => Some((request.clone(), nsp.clone())),
                        _ => None,
                    };
                    if let Some((request, nsp)) = request {
                        src.io.handle_cluster(
                            src.now,
                            ClusterMessage::Response {
                                nsp,
                                request,
                                answer: ClusterAnswer::Nodes(1),
                            },
                        );
                    }
                    if self.up {
                        dst.io.handle_cluster(dst.now, m);
                    }
                }
            }
            for (h, name) in [(&mut self.a, "node a"), (&mut self.b, "node b")] {
                let replies: Vec<ServerSideReply> = h
                    .events
                    .iter_mut()
                    .filter_map(|e| match e {
                        Event::ServerSideEmit { reply, .. } => reply.take(),
                        _ => None,
                    })
                    .collect();
                for r in replies {
                    moved = true;
                    h.io.server_side_reply(r, name.into());
                }
            }
            if !moved {
                return;
            }
        }
    }
}

#[test]
fn two_nodes_share_broadcasts_and_selections() {
    let mut p = Pair::new();
    let (mut pa, ia) = clients(&mut p.a, 1);
    let (mut pb, ib) = clients(&mut p.b, 2);
    p.b.io.join(ib[1], "r").unwrap();
    // A broadcast from `a` reaches `b`'s clients, once each.
    assert_eq!(p.a.io.of("/").emit("all", vec![1.into()]).unwrap(), 1);
    // `local` stays on `a`.
    p.a.io.of("/").local().emit("mine", vec![]).unwrap();
    // A sender excluded on `a` is excluded everywhere (it is not on `b`).
    p.a.io
        .broadcast_from(ia[0])
        .to("r")
        .emit("r", vec![])
        .unwrap();
    p.settle();
    p.a.sync(&mut pa[0]);
    for q in pb.iter_mut() {
        p.b.sync(q);
    }
    assert_eq!(pa[0].texts(), [r#"42["all",1]"#, r#"42["mine"]"#]);
    assert_eq!(pb[0].texts(), [r#"42["all",1]"#]);
    assert_eq!(pb[1].texts(), [r#"42["all",1]"#, r#"42["r"]"#]);
    // socketsJoin from `b` reaches `a`'s sockets; disconnectSockets from
    // `a` reaches `b`'s members of the room.
    p.b.io.of("/").except("r").sockets_join(&["x"]);
    p.settle();
    assert_eq!(p.a.io.rooms(ia[0]), ["x"]);
    assert_eq!(p.b.io.rooms(ib[0]), ["x"]);
    assert_eq!(p.b.io.rooms(ib[1]), ["r"]);
    p.a.io.of("/").to("x").sockets_leave(&["x"]);
    p.settle();
    assert!(p.a.io.rooms(ia[0]).is_empty() && p.b.io.rooms(ib[0]).is_empty());
    assert_eq!(p.a.io.of("/").to("r").disconnect_sockets(p.a.now, true), 0);
    p.settle();
    p.b.sync(&mut pb[1]);
    assert!(pb[1].texts().contains(&"41".to_owned()));
    assert!(pb[1].closed);
    assert_eq!(p.b.io.sockets("/"), [ib[0]]);
}

#[test]
fn two_nodes_answer_fetches_server_side_emits_and_broadcast_acks() {
    let mut p = Pair::new();
    let (mut pa, ia) = clients(&mut p.a, 1);
    let (mut pb, ib) = clients(&mut p.b, 2);
    p.b.io.set_data(ib[0], "b0".into()).unwrap();
    let request = p.a.io.of("/").fetch_sockets(p.a.now, WAIT);
    p.settle();
    let Some(Event::Fetched {
        request: r,
        sockets,
        timed_out: false,
    }) = last_event(&p.a, |e| matches!(e, Event::Fetched { .. }))
    else {
        panic!("no fetch answer")
    };
    assert_eq!(r, request);
    let ids: Vec<&str> = sockets.iter().map(|s| s.id.as_str()).collect();
    let mut want_b = [ib[0].as_str(), ib[1].as_str()];
    want_b.sort();
    assert_eq!(ids, [ia[0].as_str(), want_b[0], want_b[1]]);
    assert!(sockets.iter().any(|s| s.data == "b0".into()));

    let request =
        p.b.io
            .server_side_emit_with_ack(p.b.now, "/", "hello", vec!["hi".into()], WAIT)
            .unwrap();
    p.settle();
    assert!(matches!(
        last_event(&p.a, |e| matches!(e, Event::ServerSideEmit { .. })),
        Some(Event::ServerSideEmit { ref name, ref args, .. }) if name == "hello" && args == &[Value::from("hi")]
    ));
    assert_eq!(
        last_event(&p.b, |e| matches!(e, Event::ServerSideAcks { .. })),
        Some(Event::ServerSideAcks {
            request,
            answers: vec!["node a".into()],
            timed_out: false
        })
    );
    // The sender's own application does not hear its server-side event.
    assert!(last_event(&p.b, |e| matches!(e, Event::ServerSideEmit { .. })).is_none());

    // A broadcast with acks from `a`: `b` reports two clients, then their
    // answers; the event comes when all three clients have answered.
    let request =
        p.a.io
            .of("/")
            .emit_with_ack(p.a.now, WAIT, "q", vec![])
            .unwrap();
    p.settle();
    let answer = |h: &mut H, q: &mut Peer, with: &str| {
        h.sync(q);
        let text = q.texts().pop().unwrap();
        assert!(
            text.starts_with("42") && text.ends_with(r#"["q"]"#),
            "{text}"
        );
        let ack = text[2..text.len() - 5].to_owned();
        h.text(q, &format!("43{ack}[\"{with}\"]"));
    };
    for q in pb.iter_mut() {
        answer(&mut p.b, q, "from b");
    }
    p.settle();
    assert!(last_event(&p.a, |e| matches!(e, Event::BroadcastAck { .. })).is_none());
    answer(&mut p.a, &mut pa[0], "from a");
    p.settle();
    let Some(Event::BroadcastAck {
        request: r,
        answers,
        timed_out: false,
    }) = last_event(&p.a, |e| matches!(e, Event::BroadcastAck { .. }))
    else {
        panic!("no broadcast ack")
    };
    assert_eq!(r, request);
    assert_eq!(answers.len(), 3);
}

#[test]
fn requests_to_a_node_that_never_answers_time_out() {
    let mut p = Pair::new();
    p.up = false;
    let (_pa, _ia) = clients(&mut p.a, 1);
    let fetch = p.a.io.of("/").fetch_sockets(p.a.now, WAIT);
    let emit =
        p.a.io
            .server_side_emit_with_ack(p.a.now, "/", "hello", vec![], WAIT)
            .unwrap();
    p.settle();
    assert!(last_event(&p.a, |e| matches!(e, Event::Fetched { .. })).is_none());
    p.a.advance(5000);
    assert!(matches!(
        last_event(&p.a, |e| matches!(e, Event::Fetched { .. })),
        Some(Event::Fetched { request, sockets, timed_out: true }) if request == fetch && sockets.len() == 1
    ));
    assert_eq!(
        last_event(&p.a, |e| matches!(e, Event::ServerSideAcks { .. })),
        Some(Event::ServerSideAcks {
            request: emit,
            answers: vec![],
            timed_out: true
        })
    );
    // Answers to requests that ended, or that never were, are ignored.
    let before = p.a.events.len();
    for request in [fetch, RequestId::new("nope")] {
        p.a.io.handle_cluster(
            p.a.now,
            ClusterMessage::Response {
                nsp: "/".into(),
                request,
                answer: ClusterAnswer::Sockets(vec![]),
            },
        );
    }
    p.a.pump();
    assert_eq!(p.a.events.len(), before);
}
