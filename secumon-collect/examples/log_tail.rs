//! Load generator for the log tailer (see BENCHMARKS.md, `benches/scripts/log_tail.sh`).
//!
//! - `log_tail max LINES`: LINES lines appended at once; how fast the tailer reads them.
//! - `log_tail rate RATE SECONDS`: a writer at RATE lines/s, the tailer polling once a
//!   second as the agent does; the tailer thread's CPU (utime + stime) over the run.
//! - `log_tail write RATE SECONDS FILE`: only the writer, for a peer shipper to read.
//!
//! Lines are ~100 bytes, like an access log's.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use secumon_collect::LogTailer;

fn line(n: u64) -> String {
    format!("{n:012} 203.0.113.7 - - \"GET /api/v1/items?page={} HTTP/1.1\" 200 5120 \"-\" \"bench/1.0\"\n", n % 977)
}

/// Writes RATE lines/s for SECONDS, in 10 ms slices; returns the lines written.
fn write(path: &Path, rate: u64, seconds: u64) -> u64 {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the log");
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut chunk = String::new();
        while written < due {
            chunk.push_str(&line(written));
            written += 1;
        }
        file.write_all(chunk.as_bytes()).expect("write the log");
        std::thread::sleep(Duration::from_millis(10));
    }
    written
}

/// This thread's CPU seconds (utime + stime, from /proc/thread-self/stat).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; after the name they are the 12th and 13th.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number =
        |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).expect("see the usage at the top of log_tail.rs");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("bench.log");
    std::fs::write(&log, "").expect("create the log");
    match args.first().map(String::as_str) {
        Some("write") => {
            let written = write(Path::new(&args[3]), number(1), number(2));
            println!("written {written}");
        }
        Some("max") => {
            let lines = number(1);
            let mut tailer = LogTailer::open(&[log.display().to_string()], &dir.path().join("state.json")).unwrap();
            tailer.poll(0);
            let mut text = String::with_capacity(lines as usize * 100);
            (0..lines).for_each(|n| text.push_str(&line(n)));
            std::fs::write(&log, &text).expect("write the log");
            let (cpu, started) = (thread_cpu(), Instant::now());
            let mut read = 0u64;
            while read < lines {
                read += tailer.poll(0).len() as u64;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "max: {read} lines ({:.0} MB) in {seconds:.3} s = {:.0} lines/s, {:.2} CPU s",
                text.len() as f64 / 1e6,
                read as f64 / seconds,
                thread_cpu() - cpu
            );
        }
        Some("rate") => {
            let (rate, seconds) = (number(1), number(2));
            let mut tailer = LogTailer::open(&[log.display().to_string()], &dir.path().join("state.json")).unwrap();
            tailer.poll(0);
            let path = log.clone();
            let writer = std::thread::spawn(move || write(&path, rate, seconds));
            let (cpu, started) = (thread_cpu(), Instant::now());
            let mut read = 0u64;
            while !writer.is_finished() {
                std::thread::sleep(Duration::from_secs(1));
                read += tailer.poll(0).len() as u64;
                tailer.commit().expect("save positions");
            }
            let written = writer.join().expect("the writer");
            read += tailer.poll(0).len() as u64;
            let used = thread_cpu() - cpu;
            println!(
                "rate {rate}/s for {:.0} s: written {written}, read {read}, tailer CPU {used:.2} s = {:.2} % of one core",
                started.elapsed().as_secs_f64(),
                100.0 * used / started.elapsed().as_secs_f64()
            );
            assert_eq!(read, written, "every line read");
        }
        _ => eprintln!("usage: log_tail max LINES | rate RATE SECONDS | write RATE SECONDS FILE"),
    }
}
