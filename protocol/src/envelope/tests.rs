use super::*;
use crate::frame::{HeaderStatus, Role, decode_header};

fn encode(channel: &str, seq: u64, ts: u64, data: &Data<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_envelope(&mut out, channel, seq, ts, data);
    assert_eq!(out.len(), envelope_len(channel, seq, ts, data));
    out
}

#[test]
fn writes_the_documented_shape() {
    let out = encode("ticker.AAPL", 42, 1_700_000_000_000_000, &Data::Json(br#"{"px":1.5}"#));
    assert_eq!(out, br#"{"channel":"ticker.AAPL","seq":42,"ts":1700000000000000,"data":{"px":1.5}}"#);
    let out = encode("news", 0, 0, &Data::Text("a\"b\\c\n\u{1}é"));
    assert_eq!(out, r#"{"channel":"news","seq":0,"ts":0,"data":"a\"b\\c\n\u0001é"}"#.as_bytes());
}

#[test]
fn lengths_are_exact_for_every_digit_count_and_escape() {
    for n in [0, 9, 10, 99, 100, 12345, u64::MAX / 10, u64::MAX] {
        let s = (0..=0x7f).map(char::from).collect::<String>();
        encode(&s, n, n, &Data::Text(&s));
    }
}

#[test]
fn parses_back() {
    let text = "line\n\"quoted\" \u{1f}";
    let out = encode("c\"h", 7, 8, &Data::Text(text));
    let env = parse_envelope(&out).unwrap();
    assert_eq!((&*env.channel, env.seq, env.ts), ("c\"h", 7, 8));
    assert_eq!(serde_json::from_str::<String>(env.data.get()).unwrap(), text);
    let out = encode("a", 1, 2, &Data::Json(b"[1,2]"));
    let env = parse_envelope(&out).unwrap();
    assert!(matches!(env.channel, Cow::Borrowed("a")));
    assert_eq!(env.data.get(), "[1,2]");
    assert!(parse_envelope(b"{}").is_err());
}

#[test]
fn frame_wraps_the_envelope() {
    for size in [10, 200, 70_000] {
        let data = "x".repeat(size);
        let frame = ws_envelope_frame("c", 1, 2, &Data::Text(&data));
        let Ok(HeaderStatus::Complete { header, header_len }) =
            decode_header(&frame, Role::Client, u64::MAX >> 1)
        else {
            panic!("bad header");
        };
        assert_eq!(header.opcode, OpCode::Text);
        assert_eq!(header.payload_len as usize, frame.len() - header_len);
        assert!(parse_envelope(&frame[header_len..]).is_ok());
    }
}

#[test]
fn control_messages() {
    let sub = Control::Subscribed {
        id: Some(1),
        channels: vec!["a".into()],
        seq: [("a".to_owned(), 12)].into(),
        epoch: BTreeMap::new(),
    };
    assert_eq!(sub.to_json(), br#"{"type":"subscribed","id":1,"channels":["a"],"seq":{"a":12}}"#);
    let e = Epoch::parse("k3x9").unwrap();
    let with_epoch = Control::Subscribed {
        id: None,
        channels: vec!["a".into()],
        seq: [("a".to_owned(), 12)].into(),
        epoch: [("a".to_owned(), e)].into(),
    };
    assert_eq!(
        with_epoch.to_json(),
        br#"{"type":"subscribed","channels":["a"],"seq":{"a":12},"epoch":{"a":"k3x9"}}"#
    );
    let reset = Control::Reset { channel: "a".into(), epoch: e, seq: 2 };
    assert_eq!(reset.to_json(), br#"{"type":"reset","channel":"a","epoch":"k3x9","seq":2}"#);
    let limited = Control::ResumeLimited { message: "m".into() };
    assert_eq!(limited.to_json(), br#"{"type":"resume_limited","message":"m"}"#);
    let gap = Control::Gap { channel: "a".into(), from: 3, to: 9 };
    assert_eq!(gap.to_json(), br#"{"type":"gap","channel":"a","from":3,"to":9}"#);
    let err = Control::Error { id: None, code: ErrorCode::InvalidChannel, message: "x".into() };
    assert_eq!(err.to_json(), br#"{"type":"error","code":"invalid_channel","message":"x"}"#);
    for c in [sub, with_epoch, reset, limited, gap, err] {
        assert_eq!(serde_json::from_slice::<Control>(&c.to_json()).unwrap(), c);
    }
    let future: Control =
        serde_json::from_str(r#"{"type":"error","code":"shiny_new","message":""}"#).unwrap();
    assert!(matches!(future, Control::Error { code: ErrorCode::Internal, .. }));
}

#[test]
fn client_ops() {
    let op = ClientOp::parse(br#"{"type":"subscribe","channels":["a","b"],"since":{"a":12},"id":5}"#);
    let Ok(ClientOp::Subscribe { id: Some(5), channels, since }) = op else { panic!("{op:?}") };
    assert_eq!((channels.len(), since["a"]), (2, Position::seq(12)));
    // A position with its epoch; serialized back the same way.
    let text = br#"{"type":"subscribe","channels":["a","b"],"since":{"a":{"seq":3,"epoch":"k3x9"},"b":4}}"#;
    let op = ClientOp::parse(text).unwrap();
    let ClientOp::Subscribe { since, .. } = &op else { panic!("{op:?}") };
    assert_eq!(since["a"], Position { seq: 3, epoch: Epoch::parse("k3x9") });
    assert_eq!(since["b"], Position::seq(4));
    assert_eq!(op.to_json(), &text[..]);
    let op = ClientOp::parse(br#"{"type":"publish","channel":"a","data":{"k":[1, 2]}}"#).unwrap();
    let ClientOp::Publish { data, .. } = &op else { panic!() };
    assert_eq!(data.get(), r#"{"k":[1, 2]}"#);
    assert_eq!(op.to_json(), br#"{"type":"publish","channel":"a","data":{"k":[1, 2]}}"#);
    let op = ClientOp::parse(br#"{"type":"unsubscribe","channels":[]}"#).unwrap();
    assert_eq!(op.to_json(), br#"{"type":"unsubscribe","channels":[]}"#);
    for bad in [
        &br#"{"type":"dance"}"#[..],
        br#"{"type":"subscribe"}"#,
        br#"{"type":"publish","channel":"a"}"#,
        br#"{"type":"subscribe","channels":["a"],"bogus":1}"#,
        br#"not json"#,
        br#"{"type":"unsubscribe","channels":["a"],"since":{}}"#,
        br#"{"type":"subscribe","channels":["a"],"since":{"a":{"seq":1,"epoch":"x y"}}}"#,
        br#"{"type":"subscribe","channels":["a"],"since":{"a":"1"}}"#,
    ] {
        let Err(Control::Error { code: ErrorCode::BadRequest, .. }) = ClientOp::parse(bad) else {
            panic!("{}", String::from_utf8_lossy(bad));
        };
    }
}

#[test]
fn channel_names() {
    assert!(is_valid_channel("ticker.AAPL") && is_valid_channel("a:b-c_d"));
    assert!(!is_valid_channel("") && !is_valid_channel("a b") && !is_valid_channel("é"));
    assert!(!is_valid_channel(&"a".repeat(129)));
}
