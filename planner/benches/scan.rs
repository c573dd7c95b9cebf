//! Context-index timings on a real tree: `cargo bench -p strata-planner --bench scan [-- DIR]`.
//! DIR defaults to `/tmp/bench-ctx/big` (made by `sh /work/shared/bench/mkctx.sh /tmp/bench-ctx`).
//! `STRATA_BENCH_ROUNDS` sets the number of no-op rescans (10). Prints the first scan, no-op rescans, a rescan after one edit, and the root digest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_planner::context::ContextIndex;
use strata_planner::dockerignore::DockerIgnore;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or_else(|| PathBuf::from("/tmp/bench-ctx/big"), PathBuf::from);
    if !ctx.is_dir() {
        eprintln!("no context at {}; run mkctx.sh first", ctx.display());
        return Ok(());
    }
    let store = tempfile::tempdir()?;
    let state = store.path().join("ctx.idx");
    let ignore = DockerIgnore::load(&ctx, &ctx.join("Dockerfile"))?;

    let t = Instant::now();
    let (index, stats) = ContextIndex::scan(&ctx, &ignore, Some(&state))?;
    println!(
        "first scan: {} ({} entries, {} hashed, {} MB, state {} KB)",
        ms(t.elapsed()),
        stats.entries,
        stats.hashed,
        stats.hashed_bytes / 1_000_000,
        std::fs::metadata(&state)?.len() / 1024
    );
    let t = Instant::now();
    let root = index.digest("");
    println!(
        "root digest (cold): {} {:?}",
        ms(t.elapsed()),
        root.map(|d| d[0])
    );
    let t = Instant::now();
    let _ = index.digest("");
    println!("root digest (memo): {}", ms(t.elapsed()));
    drop(index);

    // Let the first scan's files age past the racy window.
    std::thread::sleep(Duration::from_millis(50));
    let mut times = Vec::new();
    let mut scans = Vec::new();
    let mut digests = Vec::new();
    let rounds: usize = std::env::var("STRATA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for _ in 0..rounds {
        let t = Instant::now();
        let (index, stats) = ContextIndex::scan(&ctx, &ignore, Some(&state))?;
        let scanned = t.elapsed();
        let _ = index.digest("");
        times.push(t.elapsed());
        scans.push(scanned);
        digests.push(t.elapsed() - scanned);
        assert_eq!(stats.hashed, 0, "{:?}", stats.hashed_paths);
    }
    times.sort();
    scans.sort();
    digests.sort();
    println!(
        "  of which scan: min {} median {}; root digest: min {} median {}",
        ms(scans[0]),
        ms(scans[scans.len() / 2]),
        ms(digests[0]),
        ms(digests[digests.len() / 2])
    );
    println!(
        "no-op scan + root digest: min {} median {} max {}",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );

    let victim = ctx.join("src/d100/f050.bin");
    if victim.exists() {
        let mut bytes = std::fs::read(&victim)?;
        bytes[0] ^= 1;
        std::fs::write(&victim, &bytes)?;
        let t = Instant::now();
        let (_, stats) = ContextIndex::scan(&ctx, &ignore, Some(&state))?;
        println!(
            "scan after one edit: {} (hashed {:?})",
            ms(t.elapsed()),
            stats.hashed_paths
        );
        bytes[0] ^= 1;
        std::fs::write(&victim, &bytes)?;
    }
    Ok(())
}
