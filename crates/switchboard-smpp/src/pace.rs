//! The pace of an upstream's submissions: its configured cap, and the rate it learns from the
//! SMSC's throttling.
//!
//! Sends are spaced evenly at the rate in force (a token bucket holding one token). With no
//! cap and no throttling seen, they go as fast as the window lets them. When the SMSC answers
//! `ESME_RTHROTTLED` or `ESME_RMSGQFUL`, every send on the bind pauses for `throttling_sleep_ms`
//! and the rate drops to nine tenths of what the SMSC really took in the second before (half
//! the rate in force if it took nothing), which is its quota when a quota is what it enforces;
//! each further second without throttling raises it by a tenth, at least half a
//! message a second (additive probing), until it is back at the cap, or, with no cap, high
//! enough to be no limit at all. The throttling answers that come back for sends already in
//! flight during a pause do not halve it again.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The lowest learned rate, in messages a second.
const MIN_RATE: f64 = 0.2;
/// Past this learned rate (with no cap) the SMSC is taken to have stopped throttling.
const UNLIMITED: f64 = 10_000.0;
/// How long the rate must go without throttling before it is raised again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Most recent send times kept to measure the rate really sent.
const RECENT: usize = 4096;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Pace {
    ceiling: Option<f64>,
    sleep: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The rate learned from throttling, below the ceiling; `None` while not throttled.
    learned: Option<f64>,
    /// When the next send may go, at the rate in force.
    next: Instant,
    /// No send goes before this (a throttling pause).
    paused_until: Instant,
    /// When the learned rate last changed.
    changed: Instant,
    /// When the recent sends went (the last second's, at most [`RECENT`]).
    recent: VecDeque<Instant>,
    /// When the SMSC took the recent sends (the last second's, at most [`RECENT`]).
    taken: VecDeque<Instant>,
    /// Throttling answers seen.
    throttled: u64,
}

impl Pace {
    /// A pace capped at `ceiling` messages a second (none: no cap), pausing `sleep` at each
    /// throttling.
    pub(crate) fn new(ceiling: Option<u32>, sleep: Duration) -> Self {
        let now = Instant::now();
        Self {
            ceiling: ceiling.map(f64::from),
            sleep,
            state: Mutex::new(State {
                learned: None,
                next: now,
                paused_until: now,
                changed: now,
                recent: VecDeque::new(),
                taken: VecDeque::new(),
                throttled: 0,
            }),
        }
    }

    /// The rate in force, in messages a second: the learned one, else the cap; `None` when
    /// sends are not limited.
    pub(crate) fn rate(&self) -> Option<f64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.in_force(&state)
    }

    /// How many throttling answers the SMSC gave.
    pub(crate) fn throttled_count(&self) -> u64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).throttled
    }

    fn in_force(&self, state: &State) -> Option<f64> {
        match (state.learned, self.ceiling) {
            (Some(l), Some(c)) => Some(l.min(c)),
            (l, c) => l.or(c),
        }
    }

    /// Waits for this send's turn, if it comes by `deadline`; false (and no turn taken) when it
    /// would come later.
    pub(crate) async fn until_ready_by(&self, deadline: Instant) -> bool {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let mut at = now.max(state.paused_until);
            let rate = self.in_force(&state);
            if rate.is_some() {
                at = at.max(state.next);
            }
            if at > deadline {
                return false;
            }
            if let Some(rate) = rate {
                state.next = at + Duration::from_secs_f64(1.0 / rate);
            }
            remember(&mut state.recent, at);
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }

    /// Waits for this send's turn.
    #[cfg(test)]
    async fn until_ready(&self) {
        let far = Instant::now() + Duration::from_secs(86_400);
        assert!(self.until_ready_by(far).await);
    }

    /// The SMSC throttled a send: pause, and lower the rate to a little under what the SMSC took
    /// in the last second (once per pause).
    pub(crate) fn throttled(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.throttled += 1;
        let now = Instant::now();
        if now < state.paused_until {
            return;
        }
        let second_ago = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let in_last_second =
            |times: &VecDeque<Instant>| times.iter().filter(|t| **t > second_ago && **t <= now).count();
        let sent = in_last_second(&state.recent) as f64;
        let took = in_last_second(&state.taken) as f64;
        let current = self.in_force(&state).map_or(sent, |r| r.min(sent.max(MIN_RATE)));
        let learned = if took > 0.0 { (took * 0.9).min(current) } else { current / 2.0 }.max(MIN_RATE);
        state.learned = Some(learned);
        state.changed = now;
        state.paused_until = now + self.sleep;
        // Turns already given out stand; the next one comes after the pause.
        state.next = state.next.max(state.paused_until);
        tracing::debug!(rate = learned, "the SMSC throttles; slowing the bind");
    }

    /// A send was taken: after a second without throttling, raise the learned rate a little.
    pub(crate) fn accepted(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        remember(&mut state.taken, now);
        let Some(learned) = state.learned else { return };
        if now < state.paused_until || now.duration_since(state.changed) < PROBE_INTERVAL {
            return;
        }
        let raised = learned + (learned / 10.0).max(0.5);
        let back = self.ceiling.map_or(raised >= UNLIMITED, |c| raised >= c);
        state.learned = if back { None } else { Some(raised) };
        state.changed = now;
    }
}

/// Adds a time to a bounded list of recent ones.
fn remember(times: &mut VecDeque<Instant>, at: Instant) {
    if times.len() == RECENT {
        times.pop_front();
    }
    times.push_back(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cap_spaces_sends() {
        let pace = Pace::new(Some(10), Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..5 {
            pace.until_ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        assert_eq!(pace.rate(), Some(10.0));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_pauses_slows_once_then_probes_back_up() {
        let pace = Pace::new(None, Duration::from_secs(1));
        assert_eq!(pace.rate(), None);
        // 20 sends in the last second, 10 of them taken, then the SMSC throttles, three answers
        // in a row.
        for i in 0..20 {
            pace.until_ready().await;
            if i % 2 == 0 {
                pace.accepted();
            }
            tokio::time::advance(Duration::from_millis(45)).await;
        }
        pace.throttled();
        pace.throttled();
        pace.throttled();
        assert_eq!(pace.throttled_count(), 3);
        let rate = pace.rate().unwrap();
        assert!((8.9..=9.1).contains(&rate), "nine tenths of what was taken: {rate}");
        // Nothing goes during the pause, then sends are spaced at the learned rate.
        let start = Instant::now();
        pace.until_ready().await;
        pace.until_ready().await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(1) + Duration::from_secs_f64(1.0 / rate) - Duration::from_millis(1));
        // More than a second after the change, a taken send raises it by a tenth; the next
        // one, at once, does not; a second later it rises again.
        let raise = |r: f64| r + (r / 10.0).max(0.5);
        pace.accepted();
        assert_eq!(pace.rate(), Some(raise(rate)));
        pace.accepted();
        assert_eq!(pace.rate(), Some(raise(rate)));
        tokio::time::advance(Duration::from_secs(1)).await;
        pace.accepted();
        assert_eq!(pace.rate(), Some(raise(raise(rate))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_deadline_is_not_taken() {
        let pace = Pace::new(Some(1), Duration::from_secs(1));
        let now = Instant::now();
        assert!(pace.until_ready_by(now).await, "the first turn is now");
        assert!(!pace.until_ready_by(Instant::now() + Duration::from_millis(500)).await, "the next is 1 s away");
        assert!(pace.until_ready_by(Instant::now() + Duration::from_secs(1)).await, "and is still free");
        assert_eq!(Instant::now() - now, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_never_goes_above_the_cap_nor_below_the_floor() {
        let pace = Pace::new(Some(4), Duration::from_millis(10));
        for _ in 0..30 {
            pace.throttled();
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        assert_eq!(pace.rate(), Some(MIN_RATE));
        for _ in 0..200 {
            tokio::time::advance(Duration::from_secs(1)).await;
            pace.accepted();
        }
        assert_eq!(pace.rate(), Some(4.0), "back at the cap");
    }
}
