//! Zero-copy send (`IORING_OP_SEND_ZC`) against plain send over loopback, for 4 KiB to 1 MiB
//! writes: measures where, if anywhere, `write_all_zc` wins here. A std thread drains the
//! receiving socket. Run: `cargo bench --bench zc`.

use std::io::Read;
use std::time::Instant;

use corio::net::{TcpListener, TcpStream};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn drain(mut stream: std::net::TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn send_zc(c: &mut Criterion) {
    let mut group = c.benchmark_group("send");
    for size in [4usize << 10, 64 << 10, 256 << 10, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        for zc in [false, true] {
            let name = if zc { "write_all_zc" } else { "write_all" };
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                b.iter_custom(|iters| {
                    corio::block_on(async move {
                        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                        let addr = listener.local_addr().unwrap();
                        let reader = std::thread::spawn(move || {
                            drain(std::net::TcpStream::connect(addr).unwrap())
                        });
                        let (stream, _): (TcpStream, _) = listener.accept().await.unwrap();
                        let mut buf = vec![7u8; size];
                        let start = Instant::now();
                        for _ in 0..iters {
                            let (res, back) = if zc {
                                stream.write_all_zc(buf).await
                            } else {
                                stream.write_all(buf).await
                            };
                            res.unwrap();
                            buf = back;
                        }
                        let elapsed = start.elapsed();
                        drop(stream);
                        reader.join().unwrap();
                        elapsed
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, send_zc);
criterion_main!(benches);
