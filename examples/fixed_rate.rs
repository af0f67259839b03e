//! Fixed-rate lookup load (`loadtest/issuer` runs it): `GET /statuses/{list}/{random idx}` at a
//! constant rate on loopback, with latency measured from each request's *scheduled* send time,
//! so a stall that delays later requests counts against them (no coordinated omission, as in
//! wrk2). It answers "are lookups still served at their normal speed?" at a realistic load,
//! where wrk answers "how many can be served?" at saturation.
//!
//! ```text
//! fixed_rate --target 127.0.0.1:8080 --rate 5000 --secs 10 [--conns 16] [--list 1]
//!            [--size 1048576]
//! ```
//!
//! Prints one line: `FIXED rate=… sent=… ok=… errors=… late=… p50_us=… p90_us=… p99_us=…
//! p999_us=… max_us=… wake_p99_us=…`. `late` counts requests sent more than 1 ms after their
//! slot (the generator or the server fell behind). `wake_p99_us` is the generator's own lag: the
//! time from the moment a request could have been sent (its slot, or the previous answer on its
//! connection if that came later) to its send. That part of a latency is the measuring
//! instrument waiting for a CPU, not the server.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Lookups at a fixed rate, latency from each request's scheduled send time.
#[derive(clap::Parser)]
struct Args {
    /// statusd's public listener (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = support::loopback_addr)]
    target: SocketAddr,
    /// Requests per second, over all connections.
    #[arg(long, default_value = "5000", value_parser = support::positive)]
    rate: u64,
    /// Length of the run in seconds.
    #[arg(long, default_value = "10", value_parser = support::positive)]
    secs: u64,
    /// Keep-alive connections.
    #[arg(long, default_value = "16", value_parser = support::positive)]
    conns: u64,
    /// The list looked up.
    #[arg(long, default_value = "1")]
    list: String,
    /// Entries in that list (indices are random below it).
    #[arg(long, default_value = "1048576", value_parser = support::positive)]
    size: u64,
}

/// What one connection saw: latencies in µs of the answered requests, errors, late sends.
#[derive(Default)]
struct Seen {
    latencies: Vec<u32>,
    /// Per sent request: µs from when it could have been sent to when it was.
    wake: Vec<u32>,
    errors: u64,
    late: u64,
}

/// One keep-alive HTTP/1.1 exchange: sends `req`, reads the answer's head and its
/// `Content-Length` body. Returns the status code.
fn exchange(stream: &mut BufReader<TcpStream>, req: &[u8]) -> std::io::Result<u16> {
    stream.get_mut().write_all(req)?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().map_err(std::io::Error::other)?;
            }
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    Ok(status)
}

/// Connection `n` of `a.conns`, on its own thread: blocking sockets and `thread::sleep` keep
/// the schedule to tens of microseconds, where an async runtime's timer wheel rounds every
/// wait up to the next millisecond.
fn connection(a: &Args, n: u64, start: Instant) -> Seen {
    let mut seen = Seen::default();
    let total = a.rate * a.secs / a.conns;
    let Ok(stream) = TcpStream::connect(a.target) else {
        seen.errors += total;
        return seen;
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut stream = BufReader::new(stream);
    // Connection n sends at slots n, n + conns, n + 2 conns, … of the global schedule.
    let interval = Duration::from_secs_f64(a.conns as f64 / a.rate as f64);
    let offset = Duration::from_secs_f64(n as f64 / a.rate as f64);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (n + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    for k in 0..total {
        let slot = start + offset + interval.mul_f64(k as f64);
        let now = Instant::now();
        // When this request could go: its slot, or now if the previous answer came later.
        let ready = now.max(slot);
        if slot > now {
            std::thread::sleep(slot - now);
        } else if now - slot > Duration::from_millis(1) {
            seen.late += 1;
        }
        let us = Instant::now().duration_since(ready).as_micros();
        seen.wake.push(u32::try_from(us).unwrap_or(u32::MAX));
        // xorshift64*: a fresh index per request, the same sequence in every run.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let idx = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % a.size;
        let req = format!(
            "GET /statuses/{}/{idx} HTTP/1.1\r\nHost: {}\r\n\r\n",
            a.list, a.target
        );
        match exchange(&mut stream, req.as_bytes()) {
            Ok(200) => {
                let us = Instant::now().duration_since(slot).as_micros();
                seen.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(_) => seen.errors += 1,
            Err(_) => {
                // The connection is gone: the rest of its slots count as errors.
                seen.errors += total - k;
                break;
            }
        }
    }
    seen
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let start = Instant::now() + Duration::from_millis(100);
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..a.conns)
            .map(|n| {
                let a = &a;
                scope.spawn(move || connection(a, n, start))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect()
    });
    let mut lat: Vec<u32> = seen
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let mut wake: Vec<u32> = seen.iter().flat_map(|s| s.wake.iter().copied()).collect();
    wake.sort_unstable();
    let errors: u64 = seen.iter().map(|s| s.errors).sum();
    let late: u64 = seen.iter().map(|s| s.late).sum();
    let pct_of = |v: &[u32], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let pct = |p: f64| pct_of(&lat, p);
    println!(
        "FIXED rate={} sent={} ok={} errors={errors} late={late} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} wake_p99_us={}",
        a.rate,
        lat.len() as u64 + errors,
        lat.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or(0),
        pct_of(&wake, 0.99)
    );
}
