//! One Argon2id password verification (m = 19 MiB, t = 2, p = 1), what every
//! login costs the server; SPEC §9 sizes the login rate from it.
//!
//! ```text
//! cargo bench -p latchkey-core --bench password
//! ```

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::password::PasswordHasher;

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let hasher = PasswordHasher::new(&rng).expect("hasher");
    let stored = hasher.hash("load test password", &rng).expect("hash");
    let mut group = c.benchmark_group("password");
    group.sample_size(20);
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| assert!(hasher.verify(black_box("load test password"), Some(&stored))))
    });
    // Every core verifying at once, as under a login flood: the time per
    // verification here is what bounds the login rate (÷ cores gives the
    // machine's ceiling), since the hashes share caches and memory bandwidth.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    group.bench_function(format!("argon2id_verify_on_{cores}_cores_per_hash"), |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..cores {
                    scope.spawn(|| {
                        for _ in 0..iters {
                            assert!(hasher.verify(black_box("load test password"), Some(&stored)));
                        }
                    });
                }
            });
            // `cores` hashes per iteration: report the time of one.
            start.elapsed() / cores as u32
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
