//! Shared rate-limit buckets: a new bucket starts full, takes are all or nothing, a bucket
//! refills at its rate up to a second's worth, and concurrent takers never get more than that.

use super::*;

contract!(a_rate_bucket_starts_full_and_refills_at_its_rate, concurrent_takers_never_exceed_the_bucket,);

async fn a_rate_bucket_starts_full_and_refills_at_its_rate(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    // A new bucket holds one second's worth: 10 tokens at 10 a second.
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 4, t0).await.unwrap(), 4);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 4, t0).await.unwrap(), 4);
    // Two are left: a take of three gets none, and leaves the two.
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 3, t0).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 2, t0).await.unwrap(), 2);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t0).await.unwrap(), 0);
    // Other buckets are apart.
    assert_eq!(store.take_rate_tokens("sender:+18005559876", 10, 10, t0).await.unwrap(), 10);
    // 250 ms later it has gained 2.5 tokens: two, not three.
    let t1 = t0.plus_millis(250);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 3, t1).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 2, t1).await.unwrap(), 2);
    // The half token left carries on: 50 ms more make one.
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t1.plus_millis(49)).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t1.plus_millis(50)).await.unwrap(), 1);
    // An hour idle fills it to a second's worth, no more.
    let t2 = t1.plus_millis(3_600_000);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 10, t2).await.unwrap(), 10);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t2).await.unwrap(), 0);
    // A node whose clock is behind gains nothing and moves nothing back.
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t2.plus_millis(-5_000)).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:a", 10, 1, t2.plus_millis(100)).await.unwrap(), 1);
    // Nothing to take, or more than a bucket holds, takes nothing.
    assert_eq!(store.take_rate_tokens("upstream:b", 10, 0, t2).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:b", 10, 11, t2).await.unwrap(), 0);
}

async fn concurrent_takers_never_exceed_the_bucket(store: Arc<dyn Store>) {
    // 16 takers, 25 takes of one token each, all at one instant: exactly the 100 tokens of a
    // 100-a-second bucket are handed out, whatever the interleaving.
    let now = Timestamp::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = 0;
            for _ in 0..25 {
                got += store.take_rate_tokens("upstream:shared", 100, 1, now).await.unwrap();
            }
            got
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
}
