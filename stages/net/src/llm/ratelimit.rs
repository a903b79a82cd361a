//! Pacing requests: `rpm` spaces request starts evenly, `tpm` keeps the
//! tokens of the last minute under the limit, and a server's `Retry-After`
//! or exhausted `x-ratelimit-remaining-*` headers pause every worker until
//! the time it names.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by the workers of one stage run.
pub struct RateLimit {
    rpm: Option<u32>,
    tpm: Option<u64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_start: Option<Instant>,
    /// Tokens sent in the last minute: (when, how many).
    window: VecDeque<(Instant, u64)>,
    paused_until: Option<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl RateLimit {
    /// Limits of `rpm` requests and `tpm` tokens a minute (none when `None`).
    pub fn new(rpm: Option<u32>, tpm: Option<u64>) -> Self {
        RateLimit { rpm, tpm, state: Mutex::new(State::default()) }
    }

    /// Block until a request of about `tokens` tokens may start.
    pub fn acquire(&self, tokens: u64) {
        loop {
            let wait = self.try_acquire(Instant::now(), tokens);
            match wait {
                None => return,
                Some(d) => std::thread::sleep(d.min(Duration::from_secs(5))),
            }
        }
    }

    /// Take a slot at `now`, or say how long to wait first.
    fn try_acquire(&self, now: Instant, tokens: u64) -> Option<Duration> {
        let mut s = self.state.lock().expect("rate limit lock");
        if let Some(t) = s.paused_until.filter(|t| *t > now) {
            return Some(t - now);
        }
        if let Some(t) = s.next_start.filter(|t| *t > now) {
            return Some(t - now);
        }
        if let Some(tpm) = self.tpm {
            while s.window.front().is_some_and(|(t, _)| now.duration_since(*t) >= MINUTE) {
                s.window.pop_front();
            }
            let used: u64 = s.window.iter().map(|(_, n)| n).sum();
            // A request bigger than the whole limit goes alone.
            if used > 0 && used + tokens > tpm {
                let oldest = s.window.front().expect("non-empty").0;
                return Some((oldest + MINUTE).saturating_duration_since(now).max(Duration::from_millis(10)));
            }
            s.window.push_back((now, tokens));
        }
        if let Some(rpm) = self.rpm.filter(|r| *r > 0) {
            s.next_start = Some(now + MINUTE / rpm);
        }
        None
    }

    /// Hold every request until `until` (a server said to wait).
    pub fn pause_until(&self, until: Instant) {
        let mut s = self.state.lock().expect("rate limit lock");
        if s.paused_until.is_none_or(|t| t < until) {
            s.paused_until = Some(until);
        }
    }
}

/// A `Retry-After` value in seconds (the HTTP-date form is not used by
/// the APIs we talk to, and reads as none).
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

/// An `x-ratelimit-reset-*` value: `1s`, `250ms`, `6m0s`, `1h2m3.5s` or
/// plain seconds.
pub fn reset_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Some(d) = retry_after(v) {
        return Some(d);
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    (any && num.is_empty()).then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_spaces_starts() {
        let r = RateLimit::new(Some(600), None);
        let t0 = Instant::now();
        assert_eq!(r.try_acquire(t0, 1), None);
        let wait = r.try_acquire(t0, 1).unwrap();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(r.try_acquire(t0 + Duration::from_millis(100), 1), None);
    }

    #[test]
    fn tpm_waits_for_the_window() {
        let r = RateLimit::new(None, Some(1000));
        let t0 = Instant::now();
        assert_eq!(r.try_acquire(t0, 600), None);
        assert!(r.try_acquire(t0 + Duration::from_secs(1), 600).unwrap() >= Duration::from_secs(58));
        assert_eq!(r.try_acquire(t0 + Duration::from_secs(1), 300), None);
        assert_eq!(r.try_acquire(t0 + MINUTE, 600), None);
        // Alone, a request over the limit still goes.
        let big = RateLimit::new(None, Some(10));
        assert_eq!(big.try_acquire(t0, 50), None);
    }

    #[test]
    fn pause_holds_everyone() {
        let r = RateLimit::new(None, None);
        let t0 = Instant::now();
        r.pause_until(t0 + Duration::from_secs(2));
        assert!(r.try_acquire(t0, 1).is_some());
        assert_eq!(r.try_acquire(t0 + Duration::from_secs(3), 1), None);
    }

    #[test]
    fn header_values() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(reset_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(reset_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(reset_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(reset_duration("abc"), None);
    }
}
