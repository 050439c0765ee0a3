//! Connection state recovery, spoken to in raw packets: the official
//! server's own tests of it (socket.io `test/connection-state-recovery.ts`)
//! and CONFORMANCE.md's `--recovery` contract, then the bounds.

use super::*;
use crate::socketio::RecoveryConfig;

fn recovery(r: RecoveryConfig) -> H {
    H::new(suite_config().recovery(Some(r)))
}

fn two_seconds() -> RecoveryConfig {
    RecoveryConfig::default().max_disconnection_duration(Duration::from_millis(2000))
}

/// The `sid` and `pid` of a CONNECT answer.
fn ids(answer: &str) -> (String, String) {
    let body = answer
        .split_once('{')
        .map(|(_, b)| format!("{{{b}"))
        .unwrap();
    let v = Value::from_json(&body).unwrap();
    let Value::Object(o) = &v else { panic!() };
    assert_eq!(o.len(), 2, "{answer}");
    (
        v["sid"].as_str().unwrap().to_owned(),
        v["pid"].as_str().unwrap().to_owned(),
    )
}

/// The last argument of an event packet: its offset.
fn offset(packet: &str) -> String {
    let json = &packet[packet.find('[').unwrap()..];
    let v = Value::from_json(json).unwrap();
    let Value::Array(a) = v else { panic!() };
    a.last().unwrap().as_str().unwrap().to_owned()
}

/// The event packet without its offset.
fn strip(packet: &str) -> String {
    let o = offset(packet);
    packet.replace(&format!(",\"{o}\"]"), "]")
}

/// A client on `/`: its peer, socket id, private id, and last offset.
struct Joined {
    peer: Peer,
    sid: String,
    pid: String,
    offset: String,
}

impl H {
    fn join_recovering(&mut self, auth: &str) -> Joined {
        let mut peer = self.connect();
        self.text(&mut peer, &format!("40{auth}"));
        let t = peer.texts();
        let (sid, pid) = ids(&t[0]);
        let offset = offset(&t[1]);
        peer.got.clear();
        Joined {
            peer,
            sid,
            pid,
            offset,
        }
    }

    /// The client's transport drops (as on a network cut).
    fn cut(&mut self, p: &mut Peer) {
        self.io.handle_eof(self.now, p.conn);
        self.pump();
    }

    /// A new connection asking to recover `pid` from `offset`.
    fn come_back(&mut self, pid: &str, offset: &str) -> Peer {
        let mut peer = self.connect();
        self.text(
            &mut peer,
            &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#),
        );
        peer
    }

    fn recovered(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Connection { recovered, .. } => Some(*recovered),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn the_connect_answer_carries_a_private_id_and_events_an_offset() {
    let mut h = recovery(two_seconds());
    let mut p = h.connect();
    h.text(&mut p, "40");
    let t = p.texts();
    let (sid, pid) = ids(&t[0]);
    assert_eq!((sid.len(), pid.len()), (20, 20));
    assert_ne!(sid, pid);
    assert_eq!(strip(&t[1]), r#"42["auth",{}]"#);
    p.got.clear();
    // Direct emits, broadcasts and binary events get one; each its own.
    h.text(&mut p, r#"42["message","hi"]"#);
    h.text(&mut p, r#"42["binary",1]"#);
    let socket = h.io.sockets("/")[0];
    h.io.of("/").emit("all", vec![1.into()]).unwrap();
    h.io.emit(socket, "bin", vec![Value::Binary(Bytes::from_static(b"x"))])
        .unwrap();
    h.sync(&mut p);
    let t = p.texts();
    assert_eq!(strip(&t[0]), r#"42["message-back","hi"]"#);
    assert_eq!(strip(&t[1]), r#"42["binary-back",1]"#);
    assert_eq!(strip(&t[2]), r#"42["all",1]"#);
    assert!(t[3].starts_with(r#"451-["bin",{"_placeholder":true,"num":0},""#));
    let offsets: BTreeSet<String> = t[..4].iter().map(|p| offset(p)).collect();
    assert_eq!(offsets.len(), 4);
    // Events with an ack id, acks and volatile broadcasts get none.
    p.got.clear();
    h.io.emit_with_ack(h.now, socket, "ask", vec![], None)
        .unwrap();
    h.text(&mut p, r#"421["message-with-ack","x"]"#);
    h.io.of("/").volatile().emit("v", vec![]).unwrap();
    h.sync(&mut p);
    assert_eq!(p.texts(), [r#"420["ask"]"#, r#"431["x"]"#, r#"42["v"]"#]);
}

#[test]
fn a_session_comes_back_with_its_id_rooms_data_and_missed_packets() {
    let mut h = recovery(two_seconds());
    let mut a = h.join_recovering("");
    let mut other = h.join_recovering("");
    let id = SocketId::parse(&a.sid).unwrap();
    h.io.join(id, "room1").unwrap();
    h.io.set_data(id, Value::object([("foo", Value::from("bar"))]))
        .unwrap();
    h.cut(&mut a.peer);
    assert_eq!(h.disconnects(), [DisconnectReason::TransportClose]);
    // Meanwhile: to all, to its room, to it alone, to a room it is not in,
    // excluding its room, and a broadcast from it.
    h.io.of("/").emit("hello1", vec![]).unwrap();
    h.io.of("/").to("room1").emit("hello2", vec![]).unwrap();
    h.io.of("/").to("room2").emit("not-for-it", vec![]).unwrap();
    h.io.of("/")
        .except("room1")
        .emit("not-for-it", vec![])
        .unwrap();
    h.io.broadcast_from(id).emit("not-for-it", vec![]).unwrap();
    h.io.of("/").to(&a.sid).emit("hello3", vec![]).unwrap();
    h.advance(100);
    h.sync(&mut other.peer);
    let mut b = h.come_back(&a.pid, &a.offset);
    let t = b.texts();
    // As the official server: the missed packets, then the answer with
    // the old ids, then what the connection handler sends again.
    let missed: Vec<String> = t[..3].iter().map(|p| strip(p)).collect();
    assert_eq!(
        missed,
        [r#"42["hello1"]"#, r#"42["hello2"]"#, r#"42["hello3"]"#]
    );
    assert_eq!(
        t[3],
        format!(r#"40{{"sid":"{}","pid":"{}"}}"#, a.sid, a.pid)
    );
    assert_eq!(
        strip(&t[4]),
        format!(
            r#"42["auth",{{"pid":"{}","offset":"{}"}}]"#,
            a.pid, a.offset
        )
    );
    assert_eq!(t.len(), 5);
    assert_eq!(h.recovered(), [false, false, true]);
    assert_eq!(h.io.sockets("/").len(), 2);
    assert!(h.io.sockets("/").contains(&id));
    assert_eq!(h.io.rooms(id), ["room1"]);
    assert_eq!(h.io.data(id).unwrap()["foo"].as_str(), Some("bar"));
    // From now on it gets what is sent as it is sent, once.
    b.got.clear();
    h.io.of("/").to("room1").emit("live", vec![]).unwrap();
    h.sync(&mut b);
    assert_eq!(
        b.texts().iter().map(|p| strip(p)).collect::<Vec<_>>(),
        [r#"42["live"]"#]
    );
    // The session was used: a second recovery with it is an ordinary
    // connection.
    let mut c = h.come_back(&a.pid, &a.offset);
    let (sid, pid) = ids(&c.texts()[0]);
    assert!(sid != a.sid && pid != a.pid);
    c.got.clear();
    let _ = &mut c;
}

#[test]
fn the_same_offsets_replay_nothing_twice() {
    // The client's last offset is that of the last packet it got: a
    // recovery from it replays only what came later.
    let mut h = recovery(two_seconds());
    let mut a = h.join_recovering("");
    for i in 0..3 {
        h.io.of("/").emit("n", vec![i.into()]).unwrap();
    }
    h.sync(&mut a.peer);
    let last = offset(a.peer.texts().last().unwrap());
    h.cut(&mut a.peer);
    h.io.of("/").emit("n", vec![3.into()]).unwrap();
    let b = h.come_back(&a.pid, &last);
    let t = b.texts();
    assert_eq!(strip(&t[0]), r#"42["n",3]"#);
    assert!(t[1].starts_with("40{"));
}

#[test]
fn what_cannot_be_recovered_is_an_ordinary_connection() {
    let mut h = recovery(two_seconds());
    // An unknown session.
    let unknown = h.join_recovering(r#"{"pid":"foo","offset":"bar"}"#);
    assert!(unknown.sid != "foo" && unknown.pid != "bar");
    // A session past its time.
    let mut a = h.join_recovering("");
    h.cut(&mut a.peer);
    h.advance(2001);
    let late = h.come_back(&a.pid, &a.offset);
    let (sid, pid) = ids(&late.texts()[0]);
    assert!(sid != a.sid && pid != a.pid);
    assert_eq!(late.texts().len(), 2, "nothing replayed");
    // An offset that is not one of ours, and a pid for another namespace.
    let mut b = h.join_recovering("");
    h.cut(&mut b.peer);
    let wrong = h.come_back(&b.pid, "nope");
    assert_ne!(ids(&wrong.texts()[0]).0, b.sid);
    let mut c = h.join_recovering("");
    h.cut(&mut c.peer);
    let mut d = h.connect();
    h.text(
        &mut d,
        &format!(r#"40/custom,{{"pid":"{}","offset":"{}"}}"#, c.pid, c.offset),
    );
    assert_ne!(ids(&d.texts()[0]).0, c.sid);
    assert!(h.recovered().iter().all(|r| !r));
}

#[test]
fn only_a_dropped_connection_keeps_its_session() {
    let mut h = recovery(two_seconds());
    // The client leaves; the server disconnects one; the server closes
    // one; a ping timeout; a bad packet; and a shutdown.
    let mut left = h.join_recovering("");
    h.text(&mut left.peer, "41");
    let mut kicked = h.join_recovering("");
    let id = SocketId::parse(&kicked.sid).unwrap();
    h.io.disconnect(h.now, id, false).unwrap();
    h.sync(&mut kicked.peer);
    let mut closed = h.join_recovering("");
    h.text(&mut closed.peer, r#"42["disconnect-me"]"#);
    let mut bad = h.join_recovering("");
    h.text(&mut bad.peer, "4abc");
    assert!(bad.peer.closed);
    let timed_out = h.join_recovering("");
    let mut down = h.join_recovering("");
    // `down` answers its ping; `timed_out` does not.
    h.advance(300);
    h.sync(&mut down.peer);
    h.text(&mut down.peer, "3");
    h.advance(250);
    assert!(h.disconnects().contains(&DisconnectReason::PingTimeout));
    h.io.close_all(h.now);
    h.sync(&mut down.peer);
    assert!(down.peer.closed);
    assert_eq!(
        h.disconnects(),
        [
            DisconnectReason::ClientNamespaceDisconnect,
            DisconnectReason::ServerNamespaceDisconnect,
            DisconnectReason::ServerNamespaceDisconnect,
            DisconnectReason::ForcedClose,
            DisconnectReason::PingTimeout,
            DisconnectReason::ServerShuttingDown,
        ]
    );
    let kept = |h: &mut H, j: &Joined| {
        let p = h.come_back(&j.pid, &j.offset);
        ids(&p.texts()[0]).0 == j.sid
    };
    assert!(!kept(&mut h, &left));
    assert!(!kept(&mut h, &kicked));
    assert!(!kept(&mut h, &closed));
    assert!(kept(&mut h, &bad));
    assert!(kept(&mut h, &timed_out));
    assert!(kept(&mut h, &down));
}

#[test]
fn a_recovered_socket_skips_admission_unless_told_otherwise() {
    for skip in [true, false] {
        let mut h = recovery(two_seconds().skip_middlewares(skip));
        h.io.add_namespace("/", Admission::Decide);
        let mut p = h.connect();
        h.text(&mut p, "40");
        let Some(Event::ConnectRequest { socket, .. }) = h.events.pop() else {
            panic!()
        };
        h.io.admit(h.now, socket).unwrap();
        h.sync(&mut p);
        let (sid, pid) = ids(&p.texts()[0]);
        let last = offset(&p.texts()[1]);
        h.cut(&mut p);
        h.io.of("/").emit("missed", vec![]).unwrap();
        let before = h.events.len();
        let mut q = h.come_back(&pid, &last);
        let asked: Vec<&Event> = h.events[before..]
            .iter()
            .filter(|e| matches!(e, Event::ConnectRequest { .. }))
            .collect();
        if skip {
            assert!(asked.is_empty());
        } else {
            // It is asked about under its old id, and gets nothing before
            // it is admitted.
            let [Event::ConnectRequest { socket, .. }] = asked[..] else {
                panic!("{asked:?}")
            };
            assert_eq!(socket.as_str(), sid);
            assert!(q.got.is_empty());
            h.io.admit(h.now, *socket).unwrap();
            h.sync(&mut q);
        }
        let t = q.texts();
        assert_eq!(strip(&t[0]), r#"42["missed"]"#, "skip {skip}");
        assert_eq!(ids(&t[1]), (sid, pid), "skip {skip}");
        assert_eq!(h.recovered().last(), Some(&true));
    }
}

// ----- bounds -------------------------------------------------------------------

#[test]
fn kept_packets_are_bounded_by_count() {
    let mut h = recovery(two_seconds().max_packets(5, usize::MAX));
    let mut a = h.join_recovering("");
    h.cut(&mut a.peer);
    // `auth` and four more fit; a fifth pushes `auth` (the offset) out.
    for i in 0..4 {
        h.io.of("/").emit("n", vec![i.into()]).unwrap();
    }
    assert_eq!(h.io.recovery.as_ref().unwrap().counts(), (5, 1));
    let mut b = h.join_recovering("");
    h.cut(&mut b.peer);
    let back = h.come_back(&a.pid, &a.offset);
    assert_ne!(ids(&back.texts()[0]).0, a.sid, "the offset fell out");
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().0, 5);
    // A later offset is still kept: that one recovers.
    let back = h.come_back(&b.pid, &b.offset);
    assert_eq!(ids(&back.texts()[0]).0, b.sid);
}

#[test]
fn kept_packets_are_bounded_by_bytes() {
    let mut h = recovery(two_seconds().max_packets(usize::MAX, 1700));
    let mut a = h.join_recovering("");
    h.cut(&mut a.peer);
    h.io.of("/")
        .emit("big", vec![Value::from("x".repeat(1500))])
        .unwrap();
    let counts = h.io.recovery.as_ref().unwrap().counts();
    assert_eq!(counts.0, 1, "auth was pushed out by the big one");
    let back = h.come_back(&a.pid, &a.offset);
    assert_ne!(ids(&back.texts()[0]).0, a.sid);
    // A packet over the bound on its own is not kept at all.
    h.io.of("/")
        .emit("huge", vec![Value::from("x".repeat(3000))])
        .unwrap();
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().0, 0);
}

#[test]
fn kept_sessions_are_bounded_by_count_and_bytes() {
    let mut h = recovery(two_seconds().max_sessions(2, usize::MAX));
    let mut js: Vec<Joined> = (0..3).map(|_| h.join_recovering("")).collect();
    for j in js.iter_mut() {
        h.cut(&mut j.peer);
    }
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().1, 2);
    let first = h.come_back(&js[0].pid, &js[0].offset);
    assert_ne!(ids(&first.texts()[0]).0, js[0].sid, "the oldest went");
    let last = h.come_back(&js[2].pid, &js[2].offset);
    assert_eq!(ids(&last.texts()[0]).0, js[2].sid);

    let mut h = recovery(two_seconds().max_sessions(usize::MAX, 520));
    let mut a = h.join_recovering("");
    let mut b = h.join_recovering("");
    let id = SocketId::parse(&b.sid).unwrap();
    h.io.set_data(id, Value::from("y".repeat(400))).unwrap();
    h.cut(&mut a.peer);
    h.cut(&mut b.peer);
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().1, 1);
    let back = h.come_back(&a.pid, &a.offset);
    assert_ne!(ids(&back.texts()[0]).0, a.sid);
    let back = h.come_back(&b.pid, &b.offset);
    assert_eq!(ids(&back.texts()[0]).0, b.sid);
}

#[test]
fn sessions_go_when_their_time_is_up() {
    let mut h = recovery(two_seconds());
    let mut a = h.join_recovering("");
    let mut b = h.join_recovering("");
    h.cut(&mut a.peer);
    h.cut(&mut b.peer);
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().1, 2);
    // At exactly the end of its time a session is still there.
    h.advance(2000);
    let back = h.come_back(&a.pid, &a.offset);
    assert_eq!(ids(&back.texts()[0]).0, a.sid);
    h.advance(1);
    assert_eq!(h.io.recovery.as_ref().unwrap().counts().1, 0);
}

#[test]
fn packets_that_fall_out_while_admission_waits_end_the_recovery() {
    let mut h = recovery(
        two_seconds()
            .skip_middlewares(false)
            .max_packets(3, usize::MAX),
    );
    let mut a = h.join_recovering("");
    h.cut(&mut a.peer);
    h.io.add_namespace("/", Admission::Decide);
    let mut q = h.come_back(&a.pid, &a.offset);
    let Some(Event::ConnectRequest { socket, .. }) = h.events.pop() else {
        panic!()
    };
    // Three more would push out only the offset's own packet, which is
    // fine (nothing it missed is lost); a fourth loses one it missed.
    for i in 0..4 {
        h.io.of("/").emit("n", vec![i.into()]).unwrap();
    }
    h.io.admit(h.now, socket).unwrap();
    h.sync(&mut q);
    let (sid, pid) = ids(&q.texts()[0]);
    // The old id (the application was asked about it), but a new private
    // id: the client knows it is not a recovery.
    assert_eq!(sid, a.sid);
    assert_ne!(pid, a.pid);
    assert_eq!(h.recovered().last(), Some(&false));
    assert!(h.io.rooms(socket).is_empty());
}
