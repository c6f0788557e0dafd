//! Criterion benchmarks of the protocol crate's hot paths.
//!
//! Run: `cargo bench -p tickcast-protocol --bench protocol -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast_protocol::envelope::{Data, write_envelope, ws_envelope_frame};
use tickcast_protocol::frame::{HeaderStatus, decode_header, write_client_frame};
use tickcast_protocol::handshake::{validate_upgrade, write_accept_response};
use tickcast_protocol::http::{HeaderLimits, parse_request};
use tickcast_protocol::mask::{MaskImpl, apply_mask, apply_mask_scalar};
use tickcast_protocol::{Limits, MessageDecoder, OpCode, Role};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [16usize, 128, 1024, 16 * 1024, 1024 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        // One spare byte so the buffer can also be used misaligned; phase 1 exercises rotation.
        let mut buf = vec![0x5au8; size + 1];
        g.bench_with_input(BenchmarkId::new("fast", size), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut buf[..n]), MASK, 1))
        });
        g.bench_with_input(BenchmarkId::new("scalar", size), &size, |b, &n| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf[..n]), MASK, 1))
        });
        for imp in [MaskImpl::Portable, MaskImpl::Sse2, MaskImpl::Avx2, MaskImpl::Avx512] {
            if imp.is_available() && size >= 1024 {
                let name = format!("{imp:?}").to_lowercase();
                g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &n| {
                    b.iter(|| imp.apply(black_box(&mut buf[..n]), MASK, 1))
                });
            }
        }
        g.bench_with_input(BenchmarkId::new("fast_unaligned", size), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut buf[1..=n]), MASK, 1))
        });
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    // A masked client frame header with a 16-bit length, and a 7-bit one.
    let h16 = [0x81u8, 0xFE, 0x01, 0x00, 1, 2, 3, 4];
    let h7 = [0x82u8, 0x85, 1, 2, 3, 4];
    g.bench_function("decode_header_16bit_len", |b| {
        b.iter(|| decode_header(black_box(&h16), Role::Server, 1 << 20))
    });
    g.bench_function("decode_header_7bit_len", |b| {
        b.iter(|| decode_header(black_box(&h7), Role::Server, 1 << 20))
    });
    // 64 frames back to back (headers of 6 and 8 bytes, small payloads): per-header cost
    // without the harness's per-iteration overhead.
    let mut stream = Vec::new();
    for i in 0..64usize {
        write_client_frame(&mut stream, OpCode::Binary, &vec![0; 20 + i * 3], MASK);
    }
    g.throughput(Throughput::Elements(64));
    g.bench_function("decode_header_x64", |b| {
        b.iter(|| {
            let mut buf = black_box(&stream[..]);
            let mut total = 0u64;
            while let Ok(HeaderStatus::Complete { header, header_len }) =
                decode_header(buf, Role::Server, 1 << 20)
            {
                total += header.payload_len;
                buf = &buf[header_len + header.payload_len as usize..];
            }
            total
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("harness_baseline", |b| b.iter(|| black_box(&h7).len()));
    // A small masked client text message, fully in one read: the server's common case.
    let mut wire = Vec::new();
    write_client_frame(&mut wire, OpCode::Text, br#"{"type":"subscribe","channels":["a"]}"#, MASK);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode_message_small_text", |b| {
        let mut dec = MessageDecoder::new(Role::Server, Limits::default());
        b.iter(|| dec.decode(black_box(&wire)))
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /ws?channels=ticker.AAPL HTTP/1.1\r\nHost: localhost:8080\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n\
        Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n\
        Sec-WebSocket-Version: 13\r\nOrigin: http://localhost:8080\r\n\
        Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Connection: keep-alive, Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\
        Upgrade: websocket\r\n\r\n";
    let limits = HeaderLimits::default();
    let mut out = Vec::with_capacity(256);
    c.bench_function("handshake/parse_validate_respond", |b| {
        b.iter(|| {
            let r = parse_request(black_box(req), &limits).unwrap().unwrap();
            let up = validate_upgrade(&r).unwrap();
            out.clear();
            write_accept_response(&mut out, &up, None);
            black_box(out.len())
        })
    });
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    let data = br#"{"sym":"AAPL","bid":189.12,"ask":189.14,"last":189.13,"vol":1234567,"venue":"XNAS"}"#;
    let ts = 1_700_000_000_123_456;
    g.throughput(Throughput::Elements(1));
    g.bench_function("ws_frame_json_84B", |b| {
        b.iter(|| ws_envelope_frame(black_box("ticker.AAPL"), black_box(42), ts, &Data::Json(data)))
    });
    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("write_json_84B_reused_buf", |b| {
        b.iter(|| {
            buf.clear();
            write_envelope(&mut buf, black_box("ticker.AAPL"), black_box(42), ts, &Data::Json(data));
            black_box(buf.len())
        })
    });
    let text = "breaking: \"quoted\" news\nsecond line ".repeat(3);
    g.bench_function("ws_frame_text_escaped", |b| {
        b.iter(|| ws_envelope_frame("news", 7, ts, &Data::Text(black_box(&text))))
    });
    g.finish();
}

criterion_group!(benches, unmask, frames, handshake, envelope);
criterion_main!(benches);
