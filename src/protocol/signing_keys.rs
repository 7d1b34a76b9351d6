//! The signing-key lifecycle: which key signs, which keys the JWKS
//! publishes, derived from the times recorded for each key and `now`
//! (docs/operating.md, "Keys and rotation"). Pure: the caller reads the
//! clock and the rows.
//!
//! - **next**: published, not yet signing (`now < activates_at`), so
//!   relying parties that cache the JWKS learn the key before it signs.
//! - **active**: the one key that signs: the newest by (`activates_at`,
//!   `kid`) that has activated, unless it has stopped.
//! - **retiring**: stopped signing (a newer key took over, or it was
//!   retired), still published until everything it signed has expired.
//! - **retired**: no longer published.
//!
//! A key *stops* at the earlier of its own retirement and the activation of
//! the next key (in activation order) that took over, i.e. that was not
//! itself retired before it activated. A key that stopped before it could
//! have signed on any node (by more than `Linger::stale` before its
//! activation) leaves the JWKS when it stops; one that signed, or may
//! have, stays `Linger::signed` longer (the longest token lifetime, the
//! nodes' refresh interval and a clock-skew margin: the caller adds them
//! up). A revoked key (a
//! compromised one) leaves the JWKS at its revocation, whatever it signed.
//! Once a key has stopped it never signs again: retiring the key that took
//! over does not bring an older one back.

/// How long keys stay published after they stop (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    /// After a key that signed stops: the longest lifetime of what it
    /// signs, the nodes' refresh interval and a clock-skew margin.
    pub signed: i64,
    /// How long a node may go on with what it read last (the refresh
    /// interval and the skew margin): a key stopped less than this before
    /// its activation may have signed on a node that had not read the
    /// stop yet, so it counts as having signed.
    pub stale: i64,
}

/// The times recorded for one key, in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimes {
    pub kid: String,
    /// Published from then on.
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    Retiring,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    /// Whether the JWKS carries the key.
    pub fn is_published(self) -> bool {
        !matches!(self, KeyState::Retired)
    }
}

/// Where one key stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    pub state: KeyState,
    /// When it stops (or stopped) signing, if that is decided yet.
    pub stopped_at: Option<i64>,
    /// When it leaves (or left) the JWKS, if that is decided yet.
    pub unpublish_at: Option<i64>,
}

/// The moment the key ceases: retired or revoked, whichever came first.
fn ended_at(key: &KeyTimes) -> Option<i64> {
    match (key.retired_at, key.revoked_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the key took over at its activation (it was not ended before).
fn took_over(key: &KeyTimes) -> bool {
    ended_at(key).is_none_or(|end| end > key.activates_at)
}

/// The status of every key at `now`, in the order of `keys`.
pub fn statuses(keys: &[KeyTimes], linger: Linger, now: i64) -> Vec<KeyStatus> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| {
        (keys[a].activates_at, &keys[a].kid).cmp(&(keys[b].activates_at, &keys[b].kid))
    });
    let mut out = vec![
        KeyStatus {
            state: KeyState::Next,
            stopped_at: None,
            unpublish_at: None,
        };
        keys.len()
    ];
    // Walking from the newest down, `successor` is the earliest activation
    // among the later keys that took over.
    let mut successor: Option<i64> = None;
    for &i in order.iter().rev() {
        let key = &keys[i];
        let stopped_at = match (ended_at(key), successor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let never_signed =
            stopped_at.is_some_and(|s| s.saturating_add(linger.stale) <= key.activates_at);
        let lingered = stopped_at.map(|s| {
            if never_signed {
                s
            } else {
                s.saturating_add(linger.signed)
            }
        });
        let unpublish_at = match (lingered, key.revoked_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let state = if unpublish_at.is_some_and(|u| u <= now) {
            KeyState::Retired
        } else if stopped_at.is_some_and(|s| s <= now) {
            KeyState::Retiring
        } else if now < key.activates_at {
            KeyState::Next
        } else {
            KeyState::Active
        };
        out[i] = KeyStatus {
            state,
            stopped_at,
            unpublish_at,
        };
        if took_over(key) {
            successor = Some(successor.map_or(key.activates_at, |s| s.min(key.activates_at)));
        }
    }
    out
}

/// The index of the key that signs at `now`, if any.
pub fn active(keys: &[KeyTimes], linger: Linger, now: i64) -> Option<usize> {
    statuses(keys, linger, now)
        .iter()
        .position(|s| s.state == KeyState::Active)
}

/// What retiring a key writes besides its own retirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetirePlan {
    /// The next key that starts signing at once, because the key retired
    /// was the active one.
    pub bring_forward: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetireRefusal {
    #[error("no signing key has the kid {0:?}")]
    UnknownKid(String),
    #[error(
        "{0} is the active signing key and no other key would take over: run `stepgate keys rotate` first"
    )]
    OnlyActiveKey(String),
}

/// Checks a retirement of `kid` at `now`. Retiring the active key hands
/// signing to the oldest next key at once (it is published already); with
/// no next key it is refused, so there is always a key that signs.
pub fn plan_retire(
    keys: &[KeyTimes],
    kid: &str,
    linger: Linger,
    now: i64,
) -> Result<RetirePlan, RetireRefusal> {
    let statuses = statuses(keys, linger, now);
    let Some(index) = keys.iter().position(|k| k.kid == kid) else {
        return Err(RetireRefusal::UnknownKid(kid.to_owned()));
    };
    if statuses[index].state != KeyState::Active {
        return Ok(RetirePlan {
            bring_forward: None,
        });
    }
    let successor = keys
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| s.state == KeyState::Next)
        .min_by(|(a, _), (b, _)| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
        .map(|(k, _)| k.kid.clone());
    match successor {
        Some(next) => Ok(RetirePlan {
            bring_forward: Some(next),
        }),
        None => Err(RetireRefusal::OnlyActiveKey(kid.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Linger = Linger {
        signed: 100,
        stale: 0,
    };

    fn key(kid: &str, created_at: i64, activates_at: i64) -> KeyTimes {
        KeyTimes {
            kid: kid.into(),
            created_at,
            activates_at,
            retired_at: None,
            revoked_at: None,
        }
    }

    fn states(keys: &[KeyTimes], now: i64) -> Vec<KeyState> {
        statuses(keys, LINGER, now)
            .iter()
            .map(|s| s.state)
            .collect()
    }

    use KeyState::*;

    #[test]
    fn a_single_key_is_next_until_it_activates_then_active_for_ever() {
        let keys = [key("a", 0, 10)];
        assert_eq!(states(&keys, 0), [Next]);
        assert_eq!(states(&keys, 9), [Next]);
        assert_eq!(states(&keys, 10), [Active]);
        assert_eq!(states(&keys, 1_000_000), [Active]);
        assert_eq!(active(&keys, LINGER, 9), None);
        assert_eq!(active(&keys, LINGER, 10), Some(0));
        let s = statuses(&keys, LINGER, 10)[0];
        assert_eq!((s.stopped_at, s.unpublish_at), (None, None));
    }

    #[test]
    fn publish_ahead_not_yet_elapsed_keeps_the_old_key_signing() {
        let keys = [key("old", 0, 0), key("new", 50, 60)];
        assert_eq!(states(&keys, 59), [Active, Next]);
        assert_eq!(active(&keys, LINGER, 59), Some(0));
        // At the activation the new one signs and the old one lingers.
        assert_eq!(states(&keys, 60), [Retiring, Active]);
        let old = statuses(&keys, LINGER, 60)[0];
        assert_eq!(old.stopped_at, Some(60));
        assert_eq!(old.unpublish_at, Some(60 + LINGER.signed));
    }

    #[test]
    fn a_superseded_key_leaves_the_jwks_exactly_at_its_unpublish_moment() {
        let keys = [key("old", 0, 0), key("new", 50, 60)];
        assert_eq!(states(&keys, 60 + LINGER.signed - 1), [Retiring, Active]);
        assert_eq!(states(&keys, 60 + LINGER.signed), [Retired, Active]);
    }

    #[test]
    fn two_keys_activating_at_once_the_higher_kid_signs_the_other_never() {
        let keys = [key("b", 0, 10), key("a", 0, 10)];
        assert_eq!(states(&keys, 5), [Next, Next]);
        assert_eq!(states(&keys, 10), [Active, Retired]);
        // "a" never signed: it leaves the JWKS when it stops, no lingering.
        let a = statuses(&keys, LINGER, 10)[1];
        assert_eq!((a.stopped_at, a.unpublish_at), (Some(10), Some(10)));
    }

    #[test]
    fn the_newest_activated_key_signs_among_several() {
        let keys = [key("k1", 0, 0), key("k3", 20, 30), key("k2", 10, 20)];
        assert_eq!(active(&keys, LINGER, 25), Some(2));
        assert_eq!(active(&keys, LINGER, 30), Some(1));
        // k1 stopped when k2 took over, not when k3 did.
        assert_eq!(statuses(&keys, LINGER, 30)[0].stopped_at, Some(20));
    }

    #[test]
    fn a_next_key_retired_never_signed_and_leaves_at_once() {
        let mut next = key("next", 50, 60);
        next.retired_at = Some(55);
        let keys = [key("old", 0, 0), next];
        assert_eq!(states(&keys, 54), [Active, Next]);
        assert_eq!(states(&keys, 55), [Active, Retired]);
        // Its activation time passing changes nothing: the old key signs on.
        assert_eq!(states(&keys, 1000), [Active, Retired]);
        let s = statuses(&keys, LINGER, 55)[1];
        assert_eq!(s.unpublish_at, Some(55));
    }

    #[test]
    fn the_active_key_retired_lingers_and_the_successor_signs() {
        // What `plan_retire` writes: the old key retired at 40, the next
        // key's activation brought forward to 40.
        let mut old = key("old", 0, 0);
        old.retired_at = Some(40);
        let keys = [old, key("new", 30, 40)];
        assert_eq!(states(&keys, 40), [Retiring, Active]);
        assert_eq!(
            statuses(&keys, LINGER, 40)[0].unpublish_at,
            Some(40 + LINGER.signed)
        );
        assert_eq!(states(&keys, 40 + LINGER.signed), [Retired, Active]);
    }

    #[test]
    fn retiring_the_key_that_took_over_brings_no_older_key_back() {
        let mut newer = key("newer", 10, 20);
        newer.retired_at = Some(30);
        let keys = [key("older", 0, 0), newer];
        assert_eq!(states(&keys, 30), [Retiring, Retiring]);
        assert_eq!(active(&keys, LINGER, 30), None);
    }

    #[test]
    fn a_revoked_key_leaves_at_once_even_though_it_signed() {
        let mut old = key("old", 0, 0);
        old.retired_at = Some(40);
        old.revoked_at = Some(40);
        let keys = [old, key("new", 30, 40)];
        assert_eq!(states(&keys, 39), [Active, Next]);
        assert_eq!(states(&keys, 40), [Retired, Active]);
        assert_eq!(statuses(&keys, LINGER, 40)[0].unpublish_at, Some(40));
    }

    #[test]
    fn a_superseded_key_revoked_later_leaves_at_its_revocation() {
        let mut old = key("old", 0, 0);
        old.retired_at = Some(70);
        old.revoked_at = Some(70);
        let keys = [old, key("new", 50, 60)];
        // Stopped at 60 (the successor), not 70; gone at 70, not 160.
        let s = statuses(&keys, LINGER, 65)[0];
        assert_eq!(
            (s.state, s.stopped_at, s.unpublish_at),
            (Retiring, Some(60), Some(70))
        );
        assert_eq!(states(&keys, 70), [Retired, Active]);
    }

    #[test]
    fn retiring_the_only_active_key_is_refused() {
        let keys = [key("only", 0, 0)];
        assert_eq!(
            plan_retire(&keys, "only", LINGER, 10),
            Err(RetireRefusal::OnlyActiveKey("only".into()))
        );
        // A retired successor does not count.
        let mut gone = key("gone", 5, 8);
        gone.retired_at = Some(6);
        let keys = [key("only", 0, 0), gone];
        assert!(matches!(
            plan_retire(&keys, "only", LINGER, 10),
            Err(RetireRefusal::OnlyActiveKey(_))
        ));
    }

    #[test]
    fn retiring_an_unknown_kid_is_refused() {
        let keys = [key("only", 0, 0)];
        assert_eq!(
            plan_retire(&keys, "nope", LINGER, 10),
            Err(RetireRefusal::UnknownKid("nope".into()))
        );
    }

    #[test]
    fn retiring_the_active_key_hands_over_to_the_oldest_next_key() {
        let keys = [key("old", 0, 0), key("n2", 20, 90), key("n1", 10, 80)];
        let plan = plan_retire(&keys, "old", LINGER, 30).unwrap();
        assert_eq!(plan.bring_forward.as_deref(), Some("n1"));
    }

    #[test]
    fn retiring_a_next_or_superseded_key_changes_nothing_else() {
        let keys = [key("old", 0, 0), key("new", 10, 20), key("next", 30, 90)];
        for kid in ["old", "next"] {
            assert_eq!(
                plan_retire(&keys, kid, LINGER, 40).unwrap().bring_forward,
                None,
                "{kid}"
            );
        }
    }

    #[test]
    fn a_next_key_retired_just_before_its_activation_may_have_signed() {
        let linger = Linger {
            signed: 100,
            stale: 5,
        };
        let mut keys = [key("old", 0, 0), key("new", 0, 50)];
        // Retired 3 ms before it activates: a node that had not read the
        // retirement may sign with it at 50, so it lingers.
        keys[1].retired_at = Some(47);
        let s = statuses(&keys, linger, 48)[1];
        assert_eq!((s.stopped_at, s.unpublish_at), (Some(47), Some(147)));
        // Retired well before: it never signed anywhere and leaves at once.
        keys[1].retired_at = Some(40);
        let s = statuses(&keys, linger, 41)[1];
        assert_eq!((s.stopped_at, s.unpublish_at), (Some(40), Some(40)));
    }
}
