use super::*;
use crate::io::account;
use crate::measure::deliveries::Deliveries;
use crate::measure::stamp::{self, Stamp};
use crate::measure::tally::ThreadStats;

// Frames captured from the peers (benches/peers/README.md, "Protocols the load generator must
// speak"): socket.io 4.8.4 and Action Cable 6.1.7.10, byte for byte.
const SIO_OPEN: &[u8] =
    br#"0{"sid":"ZkQKPlQgIjockToMAAAz","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
const SIO_JOINED: &[u8] = br#"40{"sid":"3X8tp6p-czOSymalAAAy"}"#;
const SIO_STAMPED: &[u8] = br#"42["msg","{\"lg\":[1,1764000000000000000,0],\"pad\":\"xxxx\"}"]"#;
const SIO_TEXT: &[u8] = b"42[\"msg\",\"plain \\\"text\\\" \\\\ \xc3\xa9\"]";
const CABLE_WELCOME: &[u8] = br#"{"type":"welcome"}"#;
const CABLE_CONFIRM: &[u8] =
    br#"{"identifier":"{\"channel\":\"BroadcastChannel\"}","type":"confirm_subscription"}"#;
const CABLE_STAMPED: &[u8] = br#"{"identifier":"{\"channel\":\"BroadcastChannel\"}","message":"{\"lg\":[1,1764000000000000000,0],\"pad\":\"xxxx\"}"}"#;
const CABLE_TEXT: &[u8] =
    b"{\"identifier\":\"{\\\"channel\\\":\\\"BroadcastChannel\\\"}\",\"message\":\"plain \\\"text\\\" \\\\ \xc3\xa9\"}";
const CABLE_PING: &[u8] = br#"{"type":"ping","message":1795636878}"#;
// What was published (POST /publish bodies of the captures).
const STAMPED_BODY: &[u8] = br#"{"lg":[1,1764000000000000000,0],"pad":"xxxx"}"#;
const TEXT_BODY: &[u8] = b"plain \"text\" \\ \xc3\xa9";

/// The frame's kind (a delivery's body emptied) and the delivered body, owned.
fn parse(protocol: Protocol, payload: &[u8]) -> (Frame<'static>, Vec<u8>) {
    let mut session = Session::new(protocol);
    match session.parse(true, payload) {
        Frame::Delivery(b) => (Frame::Delivery(&[]), b.to_vec()),
        Frame::Signal(s) => (Frame::Signal(s), Vec::new()),
        Frame::Ping => (Frame::Ping, Vec::new()),
        Frame::Refused => (Frame::Refused, Vec::new()),
        Frame::Leaving => (Frame::Leaving, Vec::new()),
        Frame::Control => (Frame::Control, Vec::new()),
        Frame::Malformed => (Frame::Malformed, Vec::new()),
    }
}

fn delivered(protocol: Protocol, payload: &[u8]) -> Vec<u8> {
    let (frame, body) = parse(protocol, payload);
    assert_eq!(frame, Frame::Delivery(&[]), "{}", String::from_utf8_lossy(payload));
    body
}

#[test]
fn the_client_frames_are_the_captured_ones() {
    let sio = Protocol::SocketIo.spec();
    assert_eq!(sio.path, "/socket.io/?EIO=4&transport=websocket");
    assert_eq!(sio.open, &[(Signal::EngineOpen, Some(&b"40"[..])), (Signal::NamespaceJoined, None)]);
    assert_eq!(sio.ping_reply, Some(&b"3"[..]));
    let cable = Protocol::ActionCable.spec();
    assert_eq!(cable.path, "/cable");
    assert_eq!(
        cable.open[0],
        (
            Signal::Welcome,
            Some(&br#"{"command":"subscribe","identifier":"{\"channel\":\"BroadcastChannel\"}"}"#[..])
        )
    );
    assert_eq!(cable.open[1], (Signal::Confirmed, None));
    // The identifier is the channel's parameters serialised, itself a JSON string.
    let cmd: serde_json::Value = serde_json::from_slice(cable.open[0].1.unwrap()).unwrap();
    assert_eq!(cmd["identifier"], CABLE_IDENTIFIER);
    assert_eq!(
        cable.upgrade_headers,
        &[("Sec-WebSocket-Protocol", "actioncable-v1-json, actioncable-unsupported")]
    );
    assert_eq!(cable.ping_reply, None);
    assert!(Protocol::Ws.spec().open.is_empty());
    assert_eq!(serde_json::to_string(&Protocol::SocketIo).unwrap(), r#""socketio""#);
    assert_eq!(serde_json::to_string(&Protocol::ActionCable).unwrap(), r#""actioncable""#);
}

#[test]
fn socket_io_frames() {
    let p = Protocol::SocketIo;
    assert_eq!(parse(p, SIO_OPEN).0, Frame::Signal(Signal::EngineOpen));
    assert_eq!(parse(p, SIO_JOINED).0, Frame::Signal(Signal::NamespaceJoined));
    let body = delivered(p, SIO_STAMPED);
    assert_eq!(body, STAMPED_BODY);
    assert_eq!(stamp::parse(&body), Some(Stamp { seq: 1, t_ns: 1_764_000_000_000_000_000, src: 0 }));
    assert_eq!(delivered(p, SIO_TEXT), TEXT_BODY);
    assert_eq!(parse(p, b"2").0, Frame::Ping);
    assert_eq!(parse(p, b"3").0, Frame::Control);
    assert_eq!(parse(p, b"6").0, Frame::Control);
    assert_eq!(parse(p, b"1").0, Frame::Leaving);
    assert_eq!(parse(p, b"41").0, Frame::Leaving);
    assert_eq!(parse(p, br#"44{"message":"Not authorized"}"#).0, Frame::Refused);
    // Another namespace, an ack id, escapes of every kind (a surrogate pair among them).
    assert_eq!(delivered(p, br#"42/feed,17["msg","a\u00e9\ud83d\ude00\n\/"]"#), "aé😀\n/".as_bytes());
    // A non-string argument is used raw; whitespace is allowed; no argument is an empty body.
    assert_eq!(delivered(p, br#"42["msg",{"lg":[2,3,0]}]"#), br#"{"lg":[2,3,0]}"#);
    assert_eq!(delivered(p, br#"42[ "msg" , "x" ]"#), b"x");
    assert_eq!(delivered(p, br#"42["msg"]"#), b"");
    for junk in [
        &b""[..],
        b"0",
        b"9",
        b"4",
        b"42",
        b"42[",
        br#"42["msg","x"#,
        b"42{}",
        br#"451-["m",{"_placeholder":true,"num":0}]"#,
        b"hello",
    ] {
        assert_eq!(parse(p, junk).0, Frame::Malformed, "{}", String::from_utf8_lossy(junk));
    }
    let mut session = Session::new(p);
    assert_eq!(session.parse(false, SIO_STAMPED), Frame::Malformed, "binary frames are not decoded");
}

#[test]
fn action_cable_frames() {
    let p = Protocol::ActionCable;
    assert_eq!(parse(p, CABLE_WELCOME).0, Frame::Signal(Signal::Welcome));
    assert_eq!(parse(p, CABLE_CONFIRM).0, Frame::Signal(Signal::Confirmed));
    let body = delivered(p, CABLE_STAMPED);
    assert_eq!(body, STAMPED_BODY);
    assert_eq!(stamp::parse(&body), Some(Stamp { seq: 1, t_ns: 1_764_000_000_000_000_000, src: 0 }));
    assert_eq!(delivered(p, CABLE_TEXT), TEXT_BODY);
    // A ping carries a `message` too: the type decides.
    assert_eq!(parse(p, CABLE_PING).0, Frame::Ping);
    let reject = br#"{"identifier":"{\"channel\":\"BroadcastChannel\"}","type":"reject_subscription"}"#;
    assert_eq!(parse(p, reject).0, Frame::Refused);
    let bye = br#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#;
    assert_eq!(parse(p, bye).0, Frame::Leaving);
    assert_eq!(parse(p, br#"{"type":"something_new"}"#).0, Frame::Control);
    // A broadcast of a hash arrives as an object: used raw; whitespace is allowed.
    let object = br#"{ "identifier" : "{}", "message" : {"lg":[4,5,0],"n":[1,{"a":"}"}]} }"#;
    assert_eq!(delivered(p, object), br#"{"lg":[4,5,0],"n":[1,{"a":"}"}]}"#);
    // A bad escape: the raw value is accounted (it has no stamp), not a crash.
    assert_eq!(delivered(p, br#"{"message":"\q"}"#), br#""\q""#);
    for junk in [
        &b""[..],
        b"{",
        b"{}",
        b"[]",
        br#"{"message":"x""#,
        br#"{"message":"x"} x"#,
        br#"{"a" 1}"#,
        b"welcome",
    ] {
        assert_eq!(parse(p, junk).0, Frame::Malformed, "{}", String::from_utf8_lossy(junk));
    }
}

#[test]
fn plain_websocket_frames_are_all_messages() {
    assert_eq!(delivered(Protocol::Ws, SIO_OPEN), SIO_OPEN);
    assert_eq!(delivered(Protocol::Ws, b""), b"");
    let mut session = Session::new(Protocol::Ws);
    assert_eq!(session.parse(false, b"\x00\xff"), Frame::Delivery(b"\x00\xff"));
    assert!(Opening::default().is_open(&session));
}

/// The captured exchanges, through the opening and the accounting: the subscriber opens on the
/// confirmation (sending what each step asks), deliveries are measured from the stamp,
/// everything else is a control message, and the keepalive gets its protocol's answer.
#[test]
fn opening_and_accounting_with_the_captures() {
    type Exchange = (
        Protocol,
        Vec<(&'static [u8], Option<&'static [u8]>)>,
        &'static [u8],
        &'static [u8],
        Option<&'static [u8]>,
    );
    let exchanges: [Exchange; 2] = [
        (
            Protocol::SocketIo,
            vec![(SIO_OPEN, Some(b"40")), (SIO_JOINED, None)],
            SIO_STAMPED,
            SIO_TEXT,
            Some(b"3"),
        ),
        (
            Protocol::ActionCable,
            // A ping may come before the confirmation.
            vec![(CABLE_WELCOME, Some(CABLE_SUBSCRIBE)), (CABLE_PING, None), (CABLE_CONFIRM, None)],
            CABLE_STAMPED,
            CABLE_TEXT,
            None,
        ),
    ];
    for (protocol, opening_frames, stamped, text, pong) in exchanges {
        let mut stats = ThreadStats::default();
        let mut session = Session::new(protocol);
        let mut opening = Opening::default();
        assert!(!opening.is_open(&session));
        let n = opening_frames.len();
        for (i, (frame, send)) in opening_frames.into_iter().enumerate() {
            let step = account::opening_frame(&mut opening, &mut session, true, frame, &mut stats).unwrap();
            assert_eq!(step, OpenStep { send, open: i + 1 == n }, "{protocol:?} frame {i}");
        }
        assert!(opening.is_open(&session));
        let mut d = Deliveries::new(vec![0], false, None);
        // Arrived 2 ms after the stamp's scheduled time.
        let arrival = 1_764_000_000_002_000_000;
        assert_eq!(account::frame(&mut session, true, stamped, Some(&mut d), &mut stats, arrival), None);
        assert_eq!(account::frame(&mut session, true, text, Some(&mut d), &mut stats, arrival), None);
        let ping: &[u8] = if protocol == Protocol::SocketIo { b"2" } else { CABLE_PING };
        assert_eq!(
            account::frame(&mut session, true, ping, Some(&mut d), &mut stats, arrival),
            pong,
            "{protocol:?}"
        );
        // Without accounting (idle): counted as received.
        assert_eq!(account::frame(&mut session, true, stamped, None, &mut stats, arrival), None);
        d.finish(&mut stats);
        let c = stats.tally.counters;
        assert_eq!(c.messages_received as usize, n + 4, "{protocol:?}");
        assert_eq!(c.control_messages as usize, n + 1, "{protocol:?}");
        // The text body carries no stamp: not the load generator's.
        assert_eq!((c.malformed, c.messages_unstamped), (0, 1), "{protocol:?}");
        assert_eq!(stats.tally.loss.delivered, 1);
        stats.fold();
        let latency = &stats.tally.hists["latency"];
        assert_eq!(latency.len(), 1);
        assert!((1_999_000..=2_001_000).contains(&latency.at(1.0)), "{}", latency.at(1.0));
    }
}

#[test]
fn an_opening_fails_fast_on_a_refusal_a_goodbye_or_another_protocol() {
    let mut stats = ThreadStats::default();
    let mut session = Session::new(Protocol::ActionCable);
    let mut opening = Opening::default();
    account::opening_frame(&mut opening, &mut session, true, CABLE_WELCOME, &mut stats).unwrap();
    let reject = br#"{"identifier":"{\"channel\":\"BroadcastChannel\"}","type":"reject_subscription"}"#;
    assert!(account::opening_frame(&mut opening, &mut session, true, reject, &mut stats).is_err());
    // tickcast's own first frame is not Socket.IO.
    let mut session = Session::new(Protocol::SocketIo);
    let subscribed = br#"{"type":"subscribed","channels":["bench"],"seq":{"bench":0}}"#;
    assert!(
        account::opening_frame(&mut Opening::default(), &mut session, true, subscribed, &mut stats).is_err()
    );
    // Steps out of order, a goodbye.
    assert!(
        account::opening_frame(&mut Opening::default(), &mut session, true, SIO_JOINED, &mut stats).is_err()
    );
    assert!(account::opening_frame(&mut Opening::default(), &mut session, true, b"1", &mut stats).is_err());
    // Keepalives and other control frames wait for the next step.
    let mut opening = Opening::default();
    assert_eq!(
        account::opening_frame(&mut opening, &mut session, true, b"2", &mut stats).unwrap(),
        OpenStep { send: Some(b"3"), open: false }
    );
    assert_eq!(
        account::opening_frame(&mut opening, &mut session, true, b"6", &mut stats).unwrap(),
        OpenStep { send: None, open: false }
    );
}

/// Action Cable reorders deliveries (a worker pool per connection): late arrivals count as
/// reordered, not lost.
#[test]
fn out_of_order_deliveries_are_reordered_not_lost() {
    let mut stats = ThreadStats::default();
    let mut session = Session::new(Protocol::ActionCable);
    let mut d = Deliveries::new(vec![0], false, None);
    let mut body = Vec::new();
    for seq in [1u64, 3, 2, 5, 4, 6] {
        stamp::write(&mut body, Stamp { seq, t_ns: 10, src: 0 }, 128);
        let body = String::from_utf8(body.clone()).unwrap();
        let frame = serde_json::json!({"identifier": CABLE_IDENTIFIER, "message": body}).to_string();
        account::frame(&mut session, true, frame.as_bytes(), Some(&mut d), &mut stats, 20);
    }
    d.finish(&mut stats);
    assert_eq!(stats.tally.loss.delivered, 6);
    assert_eq!(stats.tally.loss.reordered, 2);
    assert_eq!(stats.tally.loss.lost() + stats.tally.loss.duplicates, 0);
}

#[test]
fn json_strings() {
    let mut out = Vec::new();
    json::unescape(br#"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\ud83d\ude00"#, &mut out).unwrap();
    assert_eq!(out, "a\"b\\c/d\u{8}\u{c}\n\r\tAé😀".as_bytes());
    json::unescape(br#"lone \ud800 x"#, &mut out).unwrap();
    assert_eq!(out, "lone \u{fffd} x".as_bytes());
    for bad in [&br#"\"#[..], br#"\x"#, br#"\u12"#, br#"\u12g4"#, br#"\u+123"#] {
        assert!(json::unescape(bad, &mut out).is_none(), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(json::string_end(br#""a\"b" x"#), Some(6));
    assert_eq!(json::string_end(br#""a\""#), None);
    assert_eq!(json::value_end(b"123,"), Some(3));
    assert_eq!(json::value_end(br#"[1,"]",{"a":[]}] "#), Some(16));
    assert_eq!(json::value_end(b"[1,2"), None);
    // Every string serde_json writes comes back unescaped to the same bytes.
    for text in ["", "plain", "q\"uo\\te", "\u{1}\u{1f}\u{7f}é😀\n\t", r#"{"lg":[1,2,3]}"#] {
        let lit = serde_json::to_vec(text).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(json::string_or_raw(&lit, &mut scratch), text.as_bytes());
    }
}
