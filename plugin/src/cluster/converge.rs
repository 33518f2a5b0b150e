//! Converging: the checks that need the builder and the host, one build per distinct spec, then
//! rounds of observe → plan → act → wait until every member is up.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use vmm::StateRoot;

use super::error::{ClusterError, Problems};
use super::file::{ClusterFile, Member, SpecRef};
use super::plan::{self, Action, Health, Seen, Want, Why};
use super::{console_tail, observe, without_spec, Cluster, ClusterLock, CLUSTER_TAG, GROUP_TAG};
use crate::instance::properties::Properties;
use crate::instance::{Images, InstancePlugin};

/// How often instances are looked at while they come up.
const POLL: Duration = Duration::from_secs(1);

/// How [`Cluster::up`] and [`Cluster::watch`] wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpOptions {
    /// How long the instances provisioned in one round get to come up.
    pub timeout: Duration,
    /// How long [`Cluster::watch`] waits between looks at a converged cluster.
    pub interval: Duration,
}

/// What converging does or sees, one line each when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A spec was built (or found built) for these groups.
    Built {
        /// The groups whose spec it is.
        groups: Vec<String>,
        /// Its digest.
        digest: String,
    },
    /// An action starts: destroy, provision, replace or roll an instance (the line says which
    /// and why).
    Step(String),
    /// An instance this run provisioned is up.
    Up {
        /// The instance.
        instance: String,
        /// Its address on its network, when known.
        address: Option<String>,
    },
    /// Every member is up and up to date.
    Converged {
        /// How many instances the cluster has.
        instances: usize,
    },
    /// The cluster file or a spec changed; the cluster converges to them now.
    Reloaded,
    /// Something failed; watching goes on.
    Problem(String),
    /// An instance was destroyed by [`super::down`].
    Destroyed {
        /// The instance.
        instance: String,
    },
    /// The cluster was removed.
    Gone {
        /// How many instances it had.
        instances: usize,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Built { groups, digest } => write!(
                f,
                "built spec {} for group{} {}",
                plan::short_digest(digest),
                if groups.len() == 1 { "" } else { "s" },
                groups.join(", ")
            ),
            Event::Step(line) => f.write_str(line),
            Event::Up { instance, address } => match address {
                Some(address) => write!(f, "up {instance} ({address})"),
                None => write!(f, "up {instance}"),
            },
            Event::Converged { instances } => write!(f, "converged: {} up", count(*instances)),
            Event::Reloaded => f.write_str("the cluster file or a spec changed: converging to it"),
            Event::Problem(text) => write!(f, "problem: {text}"),
            Event::Destroyed { instance } => write!(f, "destroyed {instance}"),
            Event::Gone { instances } => write!(f, "removed the cluster ({})", count(*instances)),
        }
    }
}

/// `1 instance`, `3 instances`.
fn count(instances: usize) -> String {
    match instances {
        1 => "1 instance".to_string(),
        n => format!("{n} instances"),
    }
}

/// Where events go.
type Events<'a> = &'a (dyn Fn(Event) + Sync);

/// What the file asks for, ready to compare with what the cluster has.
#[derive(Debug, Clone)]
pub(super) struct Desired {
    pub members: Vec<Member>,
    pub groups: BTreeMap<String, GroupWant>,
    /// The texts it was made from (the cluster file's and each spec file's): when one changes,
    /// a watch makes it again.
    fingerprint: Vec<String>,
}

/// What each instance of a group is provisioned with.
#[derive(Debug, Clone)]
pub(super) struct GroupWant {
    /// The plugin properties.
    pub properties: Json,
    /// The properties without the spec.
    pub config: Json,
    /// The spec's digest (`None`: it could not be resolved).
    pub digest: Option<String>,
    pub network: Option<String>,
}

impl Desired {
    pub fn wants(&self) -> Vec<Want<'_>> {
        self.members
            .iter()
            .filter_map(|member| {
                let group = self.groups.get(&member.group)?;
                Some(Want {
                    member,
                    digest: group.digest.as_deref(),
                    config: &group.config,
                })
            })
            .collect()
    }

    pub fn network_of(&self, group: &str) -> Option<String> {
        self.groups.get(group).and_then(|g| g.network.clone())
    }
}

/// The texts a desired state depends on.
fn fingerprint(file: &ClusterFile) -> Vec<String> {
    let mut out = vec![std::fs::read_to_string(file.path()).unwrap_or_else(|e| e.to_string())];
    for group in &file.groups {
        if let SpecRef::File(path) = &group.spec {
            out.push(std::fs::read_to_string(path).unwrap_or_else(|e| e.to_string()));
        }
    }
    out
}

/// Checks what the file alone cannot say: each group's spec loads, and each declared network
/// agrees with the networks on this host. Every problem is collected.
pub(super) async fn check(file: &ClusterFile, images: &Images, root: &StateRoot) -> Result<(), ClusterError> {
    let mut problems = Vec::new();
    let mut checked: BTreeMap<(String, String), Result<(), String>> = BTreeMap::new();
    for group in &file.groups {
        let field = format!("groups.{}.spec", group.name);
        let result = match file.spec_for_check(group) {
            Err(message) => Err(message),
            Ok(key) => match checked.get(&key) {
                Some(result) => result.clone(),
                None => {
                    let result = images.check(key.0.clone(), key.1.clone()).await;
                    checked.insert(key, result.clone());
                    result
                }
            },
        };
        if let Err(message) = result {
            problems.push(file.problem(group.spec_mark, field, message));
        }
    }
    match vmm::network::existing(root) {
        Err(message) => problems.push(file.problem(
            Default::default(),
            "networks".into(),
            format!("cannot list this host's networks: {message}"),
        )),
        Ok(existing) => {
            for network in &file.networks {
                let Some(subnet) = network.subnet else {
                    continue;
                };
                let field = format!("networks.{}.subnet", network.name);
                for (name, theirs) in &existing {
                    let message = if *name == network.name && *theirs != subnet {
                        format!(
                            "network {name} exists on this host with subnet {theirs}: give that subnet, or leave subnet out"
                        )
                    } else if *name != network.name && theirs.overlaps(&subnet) {
                        format!("{subnet} overlaps network {name} ({theirs}) on this host: choose another range")
                    } else {
                        continue;
                    };
                    problems.push(file.problem(network.mark, field.clone(), message));
                }
            }
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ClusterError::Invalid(Problems(problems))),
    }
}

/// A spec as the plugin reads it: its name, its text and the format it is built in.
type SpecKey = (String, String, &'static str);

/// The desired state of `file`: each distinct spec built once (`build`), or only resolved for
/// its digest (a spec that cannot be resolved then has no digest).
pub(super) async fn desired(
    file: &ClusterFile,
    images: &Images,
    build: bool,
    events: Events<'_>,
) -> Result<Desired, ClusterError> {
    let fingerprint = fingerprint(file);
    let mut problems = Vec::new();
    // Each distinct spec (name, text, format) in file order, its digest and the groups using it.
    let mut specs: Vec<(SpecKey, Option<String>, Vec<String>)> = Vec::new();
    let mut groups = BTreeMap::new();
    for group in &file.groups {
        let field = format!("groups.{}.spec", group.name);
        let properties = file.properties(group);
        // The spec as the plugin will read it, so that its digest is the plugin's.
        let spec = Properties::parse(Some(properties.clone()))
            .and_then(|parsed| parsed.spec_text(file.dir()))
            .map_err(|e| e.to_string());
        let digest = match spec {
            Err(message) => {
                problems.push(file.problem(group.spec_mark, field, message));
                None
            }
            Ok((name, text)) => {
                let key = (name, text, group.format.name());
                let known = specs.iter().position(|(k, _, _)| *k == key);
                let index = match known {
                    Some(index) => index,
                    None => {
                        let digest = if build {
                            match images.ensure(key.0.clone(), key.1.clone(), group.format).await {
                                Ok(image) => Some(image.digest),
                                Err(message) => {
                                    problems.push(file.problem(
                                        group.spec_mark,
                                        field,
                                        format!("cannot be built: {message}"),
                                    ));
                                    None
                                }
                            }
                        } else {
                            images.digest(key.0.clone(), key.1.clone()).await.ok()
                        };
                        specs.push((key, digest, Vec::new()));
                        specs.len() - 1
                    }
                };
                specs.get_mut(index).and_then(|(_, digest, users)| {
                    users.push(group.name.clone());
                    digest.clone()
                })
            }
        };
        groups.insert(
            group.name.clone(),
            GroupWant {
                config: without_spec(properties.clone()),
                properties,
                digest,
                network: group.network.clone(),
            },
        );
    }
    if !problems.is_empty() {
        return Err(ClusterError::Invalid(Problems(problems)));
    }
    if build {
        for (_, digest, users) in specs {
            if let Some(digest) = digest {
                events(Event::Built { groups: users, digest });
            }
        }
    }
    Ok(Desired {
        members: file.members(),
        groups,
        fingerprint,
    })
}

impl Cluster {
    /// Checks the cluster (its specs load, its networks agree with the host's), builds each
    /// distinct spec once, then converges: extra instances destroyed, missing ones provisioned,
    /// dead ones replaced, outdated ones rolled one at a time; returns once every member is up
    /// (running, and holding its DHCP lease when on a network). An instance that fails, stops
    /// or is not up within `options.timeout` of a round's actions is the error, with the end of
    /// its console.
    pub async fn up(&self, options: &UpOptions, events: Events<'_>) -> Result<(), ClusterError> {
        let (_lock, plugin, desired) = self.prepare(events).await?;
        let mut rolled = HashSet::new();
        loop {
            let seen = self.observe(plugin, &desired).await?;
            let wants = desired.wants();
            if plan::converged(&wants, &seen) {
                events(Event::Converged { instances: wants.len() });
                return Ok(());
            }
            let actions = plan::plan(&wants, &seen);
            for action in &actions {
                if let Action::Replace {
                    member,
                    why: Why::Outdated { from, to, .. },
                } = action
                {
                    if !rolled.insert(member.name.clone()) {
                        return Err(ClusterError::Stuck {
                            instance: member.name.clone(),
                            wanted: to.clone().unwrap_or_default(),
                            found: from.clone().unwrap_or_default(),
                        });
                    }
                }
            }
            let touched = self.act(plugin, &desired, &actions, events).await?;
            self.wait_up(plugin, &desired, &touched, options.timeout, events)
                .await?;
        }
    }

    /// As [`Cluster::up`], then keeps converging until `stop` resolves: every
    /// `options.interval`, a dead instance is replaced and a changed cluster file or spec file
    /// is checked, built and rolled out. Failures after the start are reported as
    /// [`Event::Problem`] and converging goes on. The VMs keep running when it stops.
    pub async fn watch(
        &self,
        options: &UpOptions,
        events: Events<'_>,
        stop: impl Future<Output = ()>,
    ) -> Result<(), ClusterError> {
        let mut stop = std::pin::pin!(stop);
        let (_lock, plugin, mut desired) = tokio::select! {
            _ = &mut stop => return Ok(()),
            prepared = self.prepare(events) => prepared?,
        };
        let mut file = self.file.clone();
        // The fingerprint of a change that failed its checks: reported once.
        let mut refused = None;
        let mut was_converged = false;
        loop {
            let now = fingerprint(&file);
            if now != desired.fingerprint && refused.as_ref() != Some(&now) {
                let reload = async {
                    let changed = ClusterFile::read(file.path())?;
                    if changed.name() != file.name() {
                        return Err(ClusterError::State {
                            cluster: file.name().to_string(),
                            message: format!(
                                "{}: the cluster's name changed to {}: a watch keeps its cluster; remove the old one and start the new one",
                                file.path().display(),
                                changed.name()
                            ),
                        });
                    }
                    check(&changed, plugin.images(), &self.settings.root).await?;
                    let new = desired_state(&changed, plugin.images(), events).await?;
                    Ok((changed, new))
                };
                let reloaded = tokio::select! {
                    _ = &mut stop => return Ok(()),
                    reloaded = reload => reloaded,
                };
                match reloaded {
                    Ok((changed, new)) => {
                        events(Event::Reloaded);
                        file = changed;
                        desired = new;
                        refused = None;
                    }
                    Err(e) => {
                        events(Event::Problem(e.to_string()));
                        refused = Some(now);
                    }
                }
            }
            let round = async {
                let seen = self.observe(plugin, &desired).await?;
                let wants = desired.wants();
                let converged = plan::converged(&wants, &seen);
                if converged && !was_converged {
                    events(Event::Converged { instances: wants.len() });
                }
                let actions = plan::plan(&wants, &seen);
                let touched = self.act(plugin, &desired, &actions, events).await?;
                if !converged {
                    self.wait_up(plugin, &desired, &touched, options.timeout, events)
                        .await?;
                }
                Ok::<bool, ClusterError>(converged)
            };
            tokio::select! {
                _ = &mut stop => return Ok(()),
                done = round => match done {
                    Ok(converged) => was_converged = converged,
                    Err(e) => {
                        was_converged = false;
                        events(Event::Problem(e.to_string()));
                    }
                },
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(options.interval) => {}
            }
        }
    }

    /// Everything converging starts with: the checks (before anything is created), the lock,
    /// the plugin (picking up what an earlier run left under way), the builds.
    async fn prepare(&self, events: Events<'_>) -> Result<(ClusterLock, &Arc<InstancePlugin>, Desired), ClusterError> {
        check(&self.file, &self.images(), &self.settings.root).await?;
        let lock = ClusterLock::take(self.file.name(), &self.dir())?;
        let plugin = self.plugin()?;
        plugin.resume().map_err(|message| ClusterError::State {
            cluster: self.file.name().to_string(),
            message,
        })?;
        let desired = desired_state(&self.file, plugin.images(), events).await?;
        Ok((lock, plugin, desired))
    }

    /// The cluster's instances.
    pub(super) async fn observe(&self, plugin: &InstancePlugin, desired: &Desired) -> Result<Vec<Seen>, ClusterError> {
        observe(plugin, &self.settings.root, self.file.name(), |group| {
            desired.network_of(group)
        })
        .await
    }

    /// Carries out `actions` in order; returns the instances provisioned.
    async fn act(
        &self,
        plugin: &Arc<InstancePlugin>,
        desired: &Desired,
        actions: &[Action],
        events: Events<'_>,
    ) -> Result<Vec<String>, ClusterError> {
        let mut provisioned = Vec::new();
        for action in actions {
            events(Event::Step(action.to_string()));
            let failed = |message| ClusterError::Instance {
                instance: action.instance().to_string(),
                message,
            };
            match action {
                Action::Destroy { instance, .. } => plugin.destroy_and_wait(instance).await.map_err(failed)?,
                Action::Provision { member } | Action::Replace { member, .. } => {
                    if matches!(action, Action::Replace { .. }) {
                        plugin.destroy_and_wait(&member.name).await.map_err(failed)?;
                    }
                    let spec = self
                        .spec_for(desired, member)
                        .ok_or_else(|| failed("its group is not in the file".into()))?;
                    let id = plugin.provision(spec).await.map_err(failed)?;
                    if id != member.name {
                        return Err(failed(format!("the plugin named it {id}, not {}", member.name)));
                    }
                    provisioned.push(id);
                }
            }
        }
        Ok(provisioned)
    }

    /// What `member` is provisioned with.
    fn spec_for(&self, desired: &Desired, member: &Member) -> Option<crate::instance::types::Spec> {
        let group = desired.groups.get(&member.group)?;
        let tags = [
            (GROUP_TAG.to_string(), member.group.clone()),
            (CLUSTER_TAG.to_string(), self.file.name().to_string()),
        ];
        Some(crate::instance::types::Spec {
            properties: Some(group.properties.clone()),
            tags: Some(tags.into_iter().collect()),
            init: String::new(),
            logical_id: Some(member.logical_id.clone()),
            attachments: None,
        })
    }

    /// Waits until every member is up. A member of `touched` (provisioned in this round) that
    /// stops or fails is the error; another one that does ends the wait (the next round
    /// replaces it), as does a member that is missing. Each member of `touched` that comes up
    /// is announced.
    async fn wait_up(
        &self,
        plugin: &InstancePlugin,
        desired: &Desired,
        touched: &[String],
        timeout: Duration,
        events: Events<'_>,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut announced = HashSet::new();
        loop {
            let seen = self.observe(plugin, desired).await?;
            // The first instance not up yet, touched ones first.
            let mut waiting: Option<&Seen> = None;
            for member in &desired.members {
                let Some(instance) = seen.iter().find(|s| s.id == member.name) else {
                    return Ok(());
                };
                let ours = touched.contains(&member.name);
                match instance.health {
                    Health::Up => {
                        if ours && announced.insert(member.name.clone()) {
                            events(Event::Up {
                                instance: member.name.clone(),
                                address: instance.address.clone(),
                            });
                        }
                    }
                    Health::Dead if ours => {
                        return Err(ClusterError::Failed {
                            instance: member.name.clone(),
                            state: instance.state.clone(),
                            error: instance.error.clone(),
                            console: console_tail(&self.settings.root, &member.name),
                        })
                    }
                    Health::Dead => return Ok(()),
                    Health::Pending => {
                        let waiting_is_ours = waiting.is_some_and(|w| touched.contains(&w.id));
                        if waiting.is_none() || (ours && !waiting_is_ours) {
                            waiting = Some(instance);
                        }
                    }
                }
            }
            let Some(waiting) = waiting else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let state = match &waiting.note {
                    Some(note) => format!("{}, {note}", waiting.state),
                    None => waiting.state.clone(),
                };
                return Err(ClusterError::Timeout {
                    instance: waiting.id.clone(),
                    seconds: timeout.as_secs(),
                    state,
                    console: console_tail(&self.settings.root, &waiting.id),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The desired state of `file` with every spec built.
async fn desired_state(file: &ClusterFile, images: &Images, events: Events<'_>) -> Result<Desired, ClusterError> {
    desired(file, images, true, events).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn images(dir: &Path) -> Images {
        let options = builder::BuildOptions {
            cache_dir: dir.join("cache"),
            always_pull: false,
            mirrors: Vec::new(),
            platform: builder::Platform::host(),
            docker_config: None,
            progress: None,
        };
        let paths = builder::HostPaths {
            base_dir: dir.to_path_buf(),
            home_dir: None,
        };
        Images::new(dir.join("images"), options, paths)
    }

    #[tokio::test]
    async fn a_spec_that_does_not_load_is_named_with_its_group_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yml");
        let text = "\
name: demo
groups:
  inline:
    size: 1
    spec:
      kernel: {image: linuxkit/kernel:6.6}
      colour: red
  missing:
    spec: nowhere.yml
    size: 1
  good:
    spec: good.yml
    size: 0
";
        std::fs::write(
            dir.path().join("good.yml"),
            "kernel: {image: linuxkit/kernel:6.6}\ninit: [linuxkit/init:v1]\n",
        )
        .unwrap();
        let file = ClusterFile::parse(&path, text).unwrap();
        let root = StateRoot::new(dir.path().join("run"));
        let e = check(&file, &images(dir.path()), &root).await.unwrap_err();
        let ClusterError::Invalid(problems) = e else {
            panic!("not invalid: {e}")
        };
        let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        let name = path.display();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        // The builder's own position is the cluster file's line of the unknown field.
        assert!(
            lines[0].starts_with(&format!(
                "{name}:6:7: groups.inline.spec: invalid spec:\n{name}:7:7: colour: unknown field"
            )),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "{name}:9:11: groups.missing.spec: cannot read {}",
                dir.path().join("nowhere.yml").display()
            )),
            "{lines:#?}"
        );
    }

    #[tokio::test]
    async fn two_clusters_cannot_claim_one_range_nor_one_network_with_two_subnets() {
        let dir = tempfile::tempdir().unwrap();
        // Networks in use on this host, as the networks' own directories record them.
        let networks = dir.path().join("run/networks");
        for (name, subnet) in [("other", "10.77.0.0/16"), ("lab", "10.80.0.0/24")] {
            let net = networks.join(name);
            std::fs::create_dir_all(net.join("members")).unwrap();
            std::fs::write(
                net.join("network.json"),
                format!("{{\"name\": \"{name}\", \"subnet\": \"{subnet}\"}}"),
            )
            .unwrap();
            std::fs::write(
                net.join("members/m"),
                r#"{"name": "m", "mac": "06:00:00:00:00:01", "ip": "10.77.0.9", "static": false}"#,
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("good.yml"),
            "kernel: {image: linuxkit/kernel:6.6}\ninit: [linuxkit/init:v1]\n",
        )
        .unwrap();
        let path = dir.path().join("cluster.yml");
        let text = "name: demo\nnetworks:\n  lab: {subnet: 10.81.0.0/24}\n  mine: {subnet: 10.77.3.0/24}\ngroups:\n  g: {spec: good.yml, size: 0, network: lab}\n";
        let file = ClusterFile::parse(&path, text).unwrap();
        let root = StateRoot::new(dir.path().join("run"));
        let e = check(&file, &images(dir.path()), &root).await.unwrap_err();
        let lines: Vec<String> = match e {
            ClusterError::Invalid(problems) => problems.0.iter().map(ToString::to_string).collect(),
            e => panic!("not invalid: {e}"),
        };
        let name = path.display();
        assert_eq!(
            lines,
            [
                format!("{name}:3:17: networks.lab.subnet: network lab exists on this host with subnet 10.80.0.0/24: give that subnet, or leave subnet out"),
                format!("{name}:4:18: networks.mine.subnet: 10.77.3.0/24 overlaps network other (10.77.0.0/16) on this host: choose another range"),
            ]
        );
    }

    #[test]
    fn events_read_as_lines() {
        let built = Event::Built {
            groups: vec!["leader".into(), "nodes".into()],
            digest: format!("sha256:{}", "ab".repeat(32)),
        };
        assert_eq!(
            built.to_string(),
            "built spec sha256:abababababab for groups leader, nodes"
        );
        let up = Event::Up {
            instance: "demo-nodes-0".into(),
            address: Some("10.77.0.2".into()),
        };
        assert_eq!(up.to_string(), "up demo-nodes-0 (10.77.0.2)");
        assert_eq!(
            Event::Converged { instances: 3 }.to_string(),
            "converged: 3 instances up"
        );
    }
}
