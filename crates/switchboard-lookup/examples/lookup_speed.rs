//! How long `OfflineLookup::classify` takes, and what first use costs.
//!
//! ```text
//! cargo run --release -p switchboard-lookup --example lookup_speed
//! ```
//!
//! Prints the time to set up, to compile what +1 needs and everything else, then ns
//! per `classify` over 100,000 US, GB and mixed numbers (one thread, then two at once), and
//! for comparison `phonenumber`'s own parse + validate + type + country on a part of them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use phonenumber::metadata::DATABASE;
use switchboard_domain::Msisdn;
use switchboard_lookup::OfflineLookup;

const COUNT: usize = 100_000;

/// A linear congruential generator: deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn digits(&mut self, s: &mut String, count: usize) {
        for _ in 0..count {
            s.push(char::from(b'0' + self.below(10) as u8));
        }
    }
}

/// Numbers that start like the metadata's example numbers of the given calling codes (all
/// codes if empty), with random digits after the first `keep` digits.
fn numbers(rng: &mut Lcg, codes: &[u16]) -> Vec<Msisdn> {
    let mut examples: Vec<(u16, &str)> = Vec::new();
    for code in 1..1000u16 {
        if !codes.is_empty() && !codes.contains(&code) {
            continue;
        }
        for meta in DATABASE.by_code(&code).unwrap_or_default() {
            let d = meta.descriptors();
            for descriptor in [d.fixed_line(), d.mobile(), d.toll_free(), d.premium_rate(), d.personal_number()] {
                if let Some(example) = descriptor.and_then(|d| d.example()) {
                    examples.push((code, example));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(COUNT);
    while out.len() < COUNT {
        let (code, example) = examples[rng.below(examples.len())];
        let keep = (example.len() / 2).min(4);
        let mut s = format!("+{code}{}", &example[..keep]);
        rng.digits(&mut s, example.len() - keep);
        if let Ok(n) = Msisdn::parse(&s) {
            out.push(n);
        }
    }
    out
}

/// The resident memory, in MiB, where Linux tells it.
fn resident_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

fn per_number(elapsed: Duration, count: usize) -> f64 {
    elapsed.as_nanos() as f64 / count as f64
}

fn time(lookup: &OfflineLookup, numbers: &[Msisdn]) -> (f64, usize) {
    let mut valid = 0;
    // Once to warm the caches, then measured.
    for n in numbers {
        valid += usize::from(black_box(lookup.classify(black_box(n))).valid);
    }
    let start = Instant::now();
    for n in numbers {
        black_box(lookup.classify(black_box(n)));
    }
    (per_number(start.elapsed(), numbers.len()), valid)
}

fn main() {
    let lookup = OfflineLookup::new();
    let start = Instant::now();
    let codes = lookup.calling_codes();
    println!("setting up (first use): {:?} ({} calling codes)", start.elapsed(), codes.len());
    let start = Instant::now();
    lookup.warm(&[1]);
    println!("compiling +1 (US, CA and the Caribbean): {:?}", start.elapsed());
    let before = resident_mib();
    let start = Instant::now();
    lookup.warm_all();
    println!("compiling every other calling code: {:?}", start.elapsed());
    if let (Some(before), Some(after)) = (before, resident_mib()) {
        println!("resident memory {before:.1} MiB before compiling everything, {after:.1} MiB after");
    }

    let mut rng = Lcg(42);
    let sets = [
        ("+1 (US, CA, the Caribbean)", numbers(&mut rng, &[1])),
        ("+44 (GB, GG, IM, JE)", numbers(&mut rng, &[44])),
        ("mixed (every code)", numbers(&mut rng, &[])),
    ];
    if let Some(mib) = resident_mib() {
        println!("resident memory with the 300,000 numbers made: {mib:.1} MiB");
    }
    for (name, numbers) in &sets {
        let (ns, valid) = time(&lookup, numbers);
        println!("{name}: {ns:.0} ns per classify over {} numbers ({valid} valid)", numbers.len());
    }

    if let Some(mib) = resident_mib() {
        println!("resident memory after classifying them: {mib:.1} MiB");
    }
    // Two threads at once, each over half of the mixed numbers: once to warm their own
    // caches (the `regex` crate keeps its scratch space per thread), then measured.
    let (_, mixed) = &sets[2];
    let rounds = 5;
    let barrier = std::sync::Barrier::new(2);
    let elapsed: Vec<Duration> = std::thread::scope(|s| {
        let threads: Vec<_> = mixed
            .chunks(mixed.len() / 2)
            .map(|half| {
                let (lookup, barrier) = (&lookup, &barrier);
                s.spawn(move || {
                    for n in half {
                        black_box(lookup.classify(black_box(n)));
                    }
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..rounds {
                        for n in half {
                            black_box(lookup.classify(black_box(n)));
                        }
                    }
                    start.elapsed()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("no panic")).collect()
    });
    let slowest = elapsed.iter().max().copied().unwrap_or_default();
    println!(
        "mixed on two threads at once: {:.0} ns per classify per thread, {:.1} M classify/s in all",
        per_number(slowest, mixed.len() / 2 * rounds),
        (mixed.len() * rounds) as f64 / slowest.as_secs_f64() / 1e6
    );
    if let Some(mib) = resident_mib() {
        println!("resident memory after two more threads classified: {mib:.1} MiB");
    }

    for (name, numbers) in &sets {
        let part = &numbers[..10_000];
        let start = Instant::now();
        for n in part {
            let parsed = phonenumber::parse(None, n.as_str()).expect("parses");
            black_box((phonenumber::is_valid(&parsed), parsed.number_type(&DATABASE), parsed.country().id()));
        }
        println!("phonenumber, {name}: {:.0} ns per number", per_number(start.elapsed(), part.len()));
    }
}
