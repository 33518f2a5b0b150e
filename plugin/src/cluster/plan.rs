//! What converging does next: a pure comparison of the instances the file asks for with the ones
//! the cluster has. No VM, no clock: the executor observes, asks for the plan, carries it out,
//! waits, and asks again.
//!
//! The rules, in the order the actions come:
//! 1. an instance that no member of the file names (its group is gone, or beyond its size) is
//!    destroyed, highest index first within its group;
//! 2. a member with no instance is provisioned; one whose instance stopped or failed is replaced
//!    (destroyed, then provisioned under the same name, so it keeps its name and address);
//! 3. a group whose members are all up rolls its first outdated member (another spec digest or
//!    other properties): one at a time, the next only once that one is up again.

use std::cmp::Reverse;
use std::fmt;

use serde_json::Value as Json;

use super::file::Member;

/// How an instance is doing, as far as converging cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// Running, and on its network (its DHCP lease taken) when it has one.
    Up,
    /// On its way: being built, starting, booting on its network, stopping, or not known.
    Pending,
    /// Stopped or failed: it must be replaced.
    Dead,
}

/// An instance the cluster has.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Seen {
    /// Its instance name.
    pub id: String,
    /// Its group (the `infrakit.group` tag).
    pub group: Option<String>,
    /// Its logical ID.
    pub logical_id: Option<String>,
    pub health: Health,
    /// Its state as described (`building`, `starting`, `running`, `stopped`, `failed`, ...).
    pub state: String,
    /// What keeps a running instance from being up (no DHCP lease yet).
    pub note: Option<String>,
    /// Its address on its network, when known.
    pub address: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The digest of the spec it runs, once known.
    pub digest: Option<String>,
    /// The properties it was provisioned with, without its spec (`Moby`).
    pub config: Json,
}

/// A member the file asks for, and what it should run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Want<'a> {
    pub member: &'a Member,
    /// The digest of its group's spec (`None`: not known, nothing is outdated for it).
    pub digest: Option<&'a str>,
    /// Its group's properties, without the spec.
    pub config: &'a Json,
}

/// One step of converging.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Destroy an instance no member names.
    Destroy { instance: String, group: Option<String> },
    /// Provision a member that has no instance.
    Provision { member: Member },
    /// Destroy a member's instance and provision it again.
    Replace { member: Member, why: Why },
}

/// Why an instance is replaced.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Why {
    /// It stopped or failed.
    Dead { state: String, error: Option<String> },
    /// It runs another spec, or was provisioned with other properties.
    Outdated {
        from: Option<String>,
        to: Option<String>,
        properties_changed: bool,
    },
}

impl Action {
    /// The instance the action is about.
    pub fn instance(&self) -> &str {
        match self {
            Action::Destroy { instance, .. } => instance,
            Action::Provision { member } | Action::Replace { member, .. } => &member.name,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Destroy { instance, group } => match group {
                Some(group) => write!(f, "destroy {instance} (group {group}: not a member any more)"),
                None => write!(f, "destroy {instance} (in no group)"),
            },
            Action::Provision { member } => write!(f, "provision {} (group {}: missing)", member.name, member.group),
            Action::Replace {
                member,
                why: Why::Dead { state, error },
            } => {
                write!(f, "replace {} (group {}: {state}", member.name, member.group)?;
                if let Some(error) = error {
                    write!(f, ": {error}")?;
                }
                f.write_str(")")
            }
            Action::Replace {
                member,
                why:
                    Why::Outdated {
                        from,
                        to,
                        properties_changed,
                    },
            } => {
                write!(f, "roll {} (group {}: ", member.name, member.group)?;
                if from != to {
                    let short = |d: &Option<String>| d.as_deref().map_or("none".to_string(), short_digest);
                    write!(f, "spec {} -> {}", short(from), short(to))?;
                    if *properties_changed {
                        f.write_str(", ")?;
                    }
                }
                if *properties_changed {
                    f.write_str("properties changed")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// `sha256:` and the first 12 hex digits.
pub(super) fn short_digest(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256:{}", hex.get(..12).unwrap_or(hex))
}

/// Whether `seen` runs what `want` asks for (an unknown wanted digest does not count).
pub(super) fn outdated(want: &Want, seen: &Seen) -> bool {
    let spec_changed = want.digest.is_some_and(|d| seen.digest.as_deref() != Some(d));
    spec_changed || &seen.config != want.config
}

/// The actions that bring `seen` closer to `wants` (see the module documentation); none when
/// the cluster is converged or only waiting for instances on their way.
pub(super) fn plan(wants: &[Want], seen: &[Seen]) -> Vec<Action> {
    let instance_of = |name: &str| seen.iter().find(|s| s.id == name);
    let mut actions = Vec::new();

    let mut extras: Vec<&Seen> = seen
        .iter()
        .filter(|s| !wants.iter().any(|w| w.member.name == s.id))
        .collect();
    extras.sort_by_key(|s| (s.group.clone(), Reverse(index_key(s))));
    actions.extend(extras.into_iter().map(|s| Action::Destroy {
        instance: s.id.clone(),
        group: s.group.clone(),
    }));

    for want in wants {
        match instance_of(&want.member.name) {
            None => actions.push(Action::Provision {
                member: want.member.clone(),
            }),
            Some(s) if s.health == Health::Dead => actions.push(Action::Replace {
                member: want.member.clone(),
                why: Why::Dead {
                    state: s.state.clone(),
                    error: s.error.clone(),
                },
            }),
            Some(_) => {}
        }
    }

    let mut groups: Vec<&str> = Vec::new();
    for want in wants {
        if !groups.contains(&want.member.group.as_str()) {
            groups.push(&want.member.group);
        }
    }
    for group in groups {
        let members: Vec<(&Want, Option<&Seen>)> = wants
            .iter()
            .filter(|w| w.member.group == group)
            .map(|w| (w, instance_of(&w.member.name)))
            .collect();
        if !members.iter().all(|(_, s)| s.is_some_and(|s| s.health == Health::Up)) {
            continue;
        }
        let first_outdated = members
            .iter()
            .find_map(|(w, s)| s.filter(|s| outdated(w, s)).map(|s| (w, s)));
        if let Some((want, s)) = first_outdated {
            actions.push(Action::Replace {
                member: want.member.clone(),
                why: Why::Outdated {
                    from: s.digest.clone(),
                    to: want.digest.map(str::to_string),
                    properties_changed: &s.config != want.config,
                },
            });
        }
    }
    actions
}

/// Orders instances of a group: numeric logical IDs by number, after them the others by text.
fn index_key(seen: &Seen) -> (u8, u64, String) {
    let logical = seen.logical_id.clone().unwrap_or_default();
    match logical.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, logical),
    }
}

/// Whether the cluster is converged: nothing to do, and every member up.
pub(super) fn converged(wants: &[Want], seen: &[Seen]) -> bool {
    plan(wants, seen).is_empty()
        && wants.iter().all(|w| {
            seen.iter()
                .find(|s| s.id == w.member.name)
                .is_some_and(|s| s.health == Health::Up && !outdated(w, s))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(group: &str, index: usize) -> Member {
        Member {
            group: group.into(),
            index,
            logical_id: index.to_string(),
            name: format!("demo-{group}-{index}"),
            address: None,
        }
    }

    fn seen(group: &str, index: usize, health: Health, digest: &str) -> Seen {
        Seen {
            id: format!("demo-{group}-{index}"),
            group: Some(group.into()),
            logical_id: Some(index.to_string()),
            health,
            state: match health {
                Health::Up => "running",
                Health::Pending => "starting",
                Health::Dead => "stopped",
            }
            .into(),
            note: None,
            address: None,
            error: None,
            digest: Some(digest.into()),
            config: json!({"CPUs": 1}),
        }
    }

    /// The plan, each action as the line it prints.
    fn lines(members: &[Member], digest: &str, seen: &[Seen]) -> Vec<String> {
        let config = json!({"CPUs": 1});
        let wants: Vec<Want> = members
            .iter()
            .map(|m| Want {
                member: m,
                digest: Some(digest),
                config: &config,
            })
            .collect();
        plan(&wants, seen).iter().map(ToString::to_string).collect()
    }

    fn group(name: &str, n: usize) -> Vec<Member> {
        (0..n).map(|i| member(name, i)).collect()
    }

    #[test]
    fn an_empty_cluster_provisions_every_member_in_file_order() {
        let members = [group("leader", 1), group("nodes", 2)].concat();
        assert_eq!(
            lines(&members, "sha256:a", &[]),
            [
                "provision demo-leader-0 (group leader: missing)",
                "provision demo-nodes-0 (group nodes: missing)",
                "provision demo-nodes-1 (group nodes: missing)",
            ]
        );
    }

    #[test]
    fn a_converged_cluster_has_nothing_to_do() {
        let members = group("nodes", 2);
        let up = [
            seen("nodes", 0, Health::Up, "sha256:a"),
            seen("nodes", 1, Health::Up, "sha256:a"),
        ];
        assert!(lines(&members, "sha256:a", &up).is_empty());
        let config = json!({"CPUs": 1});
        let wants: Vec<Want> = members
            .iter()
            .map(|m| Want {
                member: m,
                digest: Some("sha256:a"),
                config: &config,
            })
            .collect();
        assert!(converged(&wants, &up));
        let mut booting = up.to_vec();
        booting[1].health = Health::Pending;
        assert!(plan(&wants, &booting).is_empty(), "one on its way is waited for");
        assert!(!converged(&wants, &booting));
    }

    #[test]
    fn scaling_down_destroys_the_highest_indexes_first() {
        let members = group("nodes", 1);
        let seen: Vec<Seen> = [0, 2, 10, 1]
            .into_iter()
            .map(|i| seen("nodes", i, Health::Up, "sha256:a"))
            .collect();
        assert_eq!(
            lines(&members, "sha256:a", &seen),
            [
                "destroy demo-nodes-10 (group nodes: not a member any more)",
                "destroy demo-nodes-2 (group nodes: not a member any more)",
                "destroy demo-nodes-1 (group nodes: not a member any more)",
            ]
        );
    }

    #[test]
    fn instances_of_a_removed_group_or_of_none_go() {
        let members = group("nodes", 1);
        let mut stray = seen("other", 0, Health::Up, "sha256:a");
        stray.group = None;
        stray.id = "demo-stray".into();
        let seen = [
            seen("nodes", 0, Health::Up, "sha256:a"),
            seen("old", 0, Health::Dead, "sha256:a"),
            stray,
        ];
        assert_eq!(
            lines(&members, "sha256:a", &seen),
            [
                "destroy demo-stray (in no group)",
                "destroy demo-old-0 (group old: not a member any more)",
            ]
        );
    }

    #[test]
    fn dead_members_are_replaced_under_their_name_and_missing_ones_provisioned() {
        let members = group("nodes", 3);
        let mut failed = seen("nodes", 2, Health::Dead, "sha256:a");
        failed.state = "failed".into();
        failed.error = Some("the build failed".into());
        let seen = [seen("nodes", 0, Health::Dead, "sha256:a"), failed];
        assert_eq!(
            lines(&members, "sha256:a", &seen),
            [
                "replace demo-nodes-0 (group nodes: stopped)",
                "provision demo-nodes-1 (group nodes: missing)",
                "replace demo-nodes-2 (group nodes: failed: the build failed)",
            ]
        );
    }

    #[test]
    fn a_changed_spec_rolls_one_member_at_a_time_once_the_group_is_up() {
        let members = group("nodes", 3);
        let old = |i| seen("nodes", i, Health::Up, "sha256:0123456789abcdef");
        let new = |i, health| seen("nodes", i, health, "sha256:fedcba9876543210");
        let to = "sha256:fedcba9876543210";
        // All up on the old spec: the first one rolls.
        assert_eq!(
            lines(&members, to, &[old(0), old(1), old(2)]),
            ["roll demo-nodes-0 (group nodes: spec sha256:0123456789ab -> sha256:fedcba987654)"]
        );
        // The rolled one is on its way: nothing else rolls.
        assert!(lines(&members, to, &[new(0, Health::Pending), old(1), old(2)]).is_empty());
        // It is up: the next one.
        assert_eq!(
            lines(&members, to, &[new(0, Health::Up), old(1), old(2)]),
            ["roll demo-nodes-1 (group nodes: spec sha256:0123456789ab -> sha256:fedcba987654)"]
        );
        // A missing member is provisioned (on the new spec) before anything rolls.
        assert_eq!(
            lines(&members, to, &[new(0, Health::Up), old(2)]),
            ["provision demo-nodes-1 (group nodes: missing)"]
        );
        // A dead outdated member is replaced as dead, which also rolls it.
        assert_eq!(
            lines(
                &members,
                to,
                &[
                    new(0, Health::Up),
                    new(1, Health::Up),
                    seen("nodes", 2, Health::Dead, "sha256:0")
                ]
            ),
            ["replace demo-nodes-2 (group nodes: stopped)"]
        );
        assert!(lines(
            &members,
            to,
            &[new(0, Health::Up), new(1, Health::Up), new(2, Health::Up)]
        )
        .is_empty());
    }

    #[test]
    fn groups_roll_independently_and_properties_count() {
        let members = [group("a", 2), group("b", 1)].concat();
        let mut pending = seen("a", 1, Health::Pending, "sha256:new");
        pending.config = json!({"CPUs": 2});
        let mut changed = seen("b", 0, Health::Up, "sha256:new");
        changed.config = json!({"CPUs": 2});
        let seen = [seen("a", 0, Health::Up, "sha256:old"), pending, changed];
        // Group a waits for its pending member; group b rolls for its properties.
        assert_eq!(
            lines(&members, "sha256:new", &seen),
            ["roll demo-b-0 (group b: properties changed)"]
        );
    }

    #[test]
    fn an_unknown_digest_rolls_nothing() {
        let members = group("nodes", 1);
        let config = json!({"CPUs": 1});
        let wants = [Want {
            member: &members[0],
            digest: None,
            config: &config,
        }];
        let seen = [seen("nodes", 0, Health::Up, "sha256:whatever")];
        assert!(plan(&wants, &seen).is_empty());
        assert!(converged(&wants, &seen));
    }
}
