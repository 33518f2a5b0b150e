//! The recipe (what a request becomes), runs against a stand-in hyperkit, and the lifecycle
//! through the trait.

use std::path::Path;

use super::*;
use crate::instance::{InstanceState, Tags};
use crate::machine::BootKind;
use crate::process::{process_name, ProcessStatus};
use crate::AnyBackend;

/// A stand-in for hyperkit (which only exists on macOS): records its arguments in `args` next to
/// itself, writes its pid file like `-F` does (as a process whose argv\[0\] is `hyperkit`, as
/// hyperkit's is), then runs `rest` in bash.
fn stand_in(dir: &Path, rest: &str) -> PathBuf {
    let p = dir.join("hyperkit");
    let body = format!(
        "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n\
         exec -a hyperkit bash -c 'echo $$ > \"$1\"; {rest}' hyperkit \"$4\"\n"
    );
    crate::testing::write_script(&p, &body);
    p
}

/// `P-kernel`, `P-initrd.img`, `P-cmdline` in `dir`; returns `P`.
fn image(dir: &Path, name: &str) -> PathBuf {
    for (suffix, content) in [("-kernel", "k"), ("-initrd.img", "i"), ("-cmdline", "console=ttyS0\n")] {
        std::fs::write(dir.join(format!("{name}{suffix}")), content).unwrap();
    }
    dir.join(name)
}

struct Setup {
    tmp: tempfile::TempDir,
    hyperkit: Hyperkit,
}

impl Setup {
    /// A root under a temp dir, a stand-in hyperkit running `rest`, no `$HOME`.
    fn new(rest: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let mut hyperkit = Hyperkit::new(StateRoot::new(tmp.path().join("root")));
        hyperkit.binary = Some(stand_in(tmp.path(), rest));
        hyperkit.home = None;
        Setup { tmp, hyperkit }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A request for `name` (an image of that name in the temp dir) without networking.
    fn request(&self, name: &str) -> Request {
        let mut request = Request::new(name, image(self.path(), name));
        request.networking = Some("none".into());
        request
    }

    fn args(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path().join("args")).unwrap();
        text.lines().map(str::to_string).collect()
    }
}

fn strs(plan: &Plan) -> Vec<String> {
    plan.config
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn own_vpnkit_with_publish_userdata_and_disk() {
    let s = Setup::new("exit 0");
    let mut hk = s.hyperkit.clone();
    hk.vpnkit = Some("/opt/vpnkit".into());
    hk.uuid = Some("11111111-2222-4333-8444-555555555555".into());
    let mut request = s.request("lk");
    request.networking = Some("vpnkit".into());
    request.publish = vec!["2222:22".parse().unwrap()];
    request.userdata = Some(b"{}".to_vec());
    request.disks = vec!["size=1G".parse().unwrap()];
    let (lock, plan) = hk.prepare(&request, true).unwrap();
    let p = s.path().join("lk").display().to_string();
    let st = format!("{p}-state");
    let uuid = std::fs::read_to_string(format!("{st}/vpnkit.uuid")).unwrap();
    let expected: Vec<String> = [
        "-A".to_string(),
        "-u".into(),
        "-F".into(),
        format!("{st}/hyperkit.pid"),
        "-c".into(),
        "1".into(),
        "-m".into(),
        "1024M".into(),
        "-s".into(),
        "0:0,hostbridge".into(),
        "-s".into(),
        "31,lpc".into(),
        "-s".into(),
        format!("1:0,virtio-vpnkit,path={st}/vpnkit_eth.sock,uuid={uuid}"),
        "-U".into(),
        "11111111-2222-4333-8444-555555555555".into(),
        "-s".into(),
        format!("2:0,ahci-hd,{st}/disk.raw"),
        "-s".into(),
        format!("3,virtio-sock,guest_cid=3,path={st},guest_forwards=62373"),
        "-s".into(),
        format!("4,ahci-cd,{st}/data.iso"),
        "-s".into(),
        "5,virtio-rnd".into(),
        "-s".into(),
        format!("6,virtio-9p,path={st}/vpnkit_port.sock,tag=port"),
        "-l".into(),
        format!("com1,autopty={st}/tty,log={st}/console-ring"),
        "-f".into(),
        format!("kexec,{p}-kernel,{p}-initrd.img,earlyprintk=serial console=ttyS0"),
    ]
    .to_vec();
    assert_eq!(strs(&plan), expected);
    assert_eq!(
        plan.vpnkit_launch,
        Some(VpnkitLaunch {
            binary: "/opt/vpnkit".into(),
            ethernet: format!("{st}/vpnkit_eth.sock").into(),
            port: format!("{st}/vpnkit_port.sock").into(),
            vsock: format!("{st}/connect").into(),
        })
    );
    assert_eq!(
        plan.publish_via,
        Some(PublishVia {
            ethernet: format!("{st}/vpnkit_eth.sock").into(),
            port: format!("{st}/vpnkit_port.sock").into(),
            uuid: uuid.clone(),
        })
    );
    assert!(plan.relay, "the default console of a foreground run is relayed");
    // The start is recorded, with the disk it creates, and the state dir is found by name.
    let record = s.hyperkit.root().open("lk").unwrap().1;
    assert_eq!(
        (record.state, record.backend),
        (InstanceState::Starting, BackendKind::Hyperkit)
    );
    assert_eq!(record.created_disks, [Path::new(&st).join("disk.raw")]);
    assert_eq!(record.publish, ["2222:22/tcp"]);
    assert_eq!(record.owner_pid, Some(std::process::id()));
    drop(lock);
    // The vpnkit UUID is kept for the next run, so the VM keeps its address.
    let again = hk.prepare(&request, true).unwrap().1;
    assert_eq!(again.publish_via.unwrap().uuid, uuid);
}

#[test]
fn consoles_follow_the_choice_and_the_state_dir_the_request() {
    let s = Setup::new("exit 0");
    let elsewhere = s.path().join("elsewhere");
    let mut request = s.request("lk");
    request.state_dir = Some(elsewhere.clone());
    let mut hk = s.hyperkit.clone();
    let tty = format!("com1,autopty={0}/tty,log={0}/console-ring", elsewhere.display());
    for (console, foreground, com1, relay) in [
        (ForegroundConsole::Relay, true, tty.clone(), true),
        (ForegroundConsole::File, true, tty.clone(), false),
        (ForegroundConsole::Stdio, false, tty.clone(), false),
        (
            ForegroundConsole::Stdio,
            true,
            format!("com1,stdio,log={}/console-ring", elsewhere.display()),
            false,
        ),
    ] {
        hk.console = console;
        let (plan, dir) = hk.plan(&request, foreground).unwrap();
        assert_eq!(dir, elsewhere);
        let args = strs(&plan);
        assert!(args.contains(&com1), "{console:?} {foreground}: {args:?}");
        assert_eq!(plan.relay, relay, "{console:?} {foreground}");
        assert_eq!(plan.config.vpnkit, None);
        assert!(plan.config.vsock_ports.is_empty() && plan.config.cdroms.is_empty());
        assert_eq!(args[12..14], ["-U".to_string(), plan.config.uuid.clone().unwrap()]);
    }
    assert!(!elsewhere.exists(), "planning touches nothing");
}

#[test]
fn isos_boot_through_the_firmware() {
    let s = Setup::new("exit 0");
    std::fs::write(s.path().join("lk-efi.iso"), "iso").unwrap();
    let fw = s.path().join("UEFI.fd");
    std::fs::write(&fw, "fw").unwrap();
    let iso = s.path().join("lk-efi.iso");
    let mut request = Request::new("lk-efi", &iso);
    request.networking = Some("none".into());
    request.boot = BootKind::Iso;
    let e = s.hyperkit.plan(&request, true).unwrap_err();
    assert!(matches!(e, VmError::Hyperkit(HyperkitError::IsoNeedsUefi(_))), "{e}");
    request.uefi = true;
    let e = s.hyperkit.plan(&request, true).unwrap_err();
    assert!(
        matches!(e, VmError::Hyperkit(HyperkitError::FirmwareMissing(ref p)) if p == Path::new(DEFAULT_FIRMWARE)),
        "{e}"
    );
    request.firmware = Some(fw.clone());
    let (plan, dir) = s.hyperkit.plan(&request, true).unwrap();
    let args = strs(&plan);
    assert!(args.contains(&format!("2,ahci-cd,{}", iso.display())), "{args:?}");
    assert_eq!(args.last().unwrap(), &format!("bootrom,{},,", fw.display()));
    assert_eq!(dir, s.path().join("lk-efi-state"));
}

#[test]
fn clear_errors_without_flag_names() {
    let s = Setup::new("exit 0");
    let mut request = s.request("lk");
    let err = |hk: &Hyperkit, request: &Request| hk.plan(request, true).unwrap_err().to_string();
    request.publish = vec!["80:80".parse().unwrap()];
    assert_eq!(
        err(&s.hyperkit, &request),
        "port publishing requires \"docker-for-mac\" or \"vpnkit\" networking, not \"none\""
    );
    request.publish.clear();
    request.disks = vec!["d.qcow2".parse().unwrap()];
    let e = err(&s.hyperkit, &request);
    assert!(
        e.starts_with("disk d.qcow2: hyperkit runs raw disk images only, not qcow2"),
        "{e}"
    );
    request.disks.clear();
    request.networking = None;
    let mut hk = s.hyperkit.clone();
    hk.home = Some(s.path().to_path_buf());
    let e = err(&hk, &request);
    assert!(e.starts_with("cannot find Docker Desktop's vpnkit sockets"), "{e}");
    request.networking = Some("slirp".into());
    let e = err(&s.hyperkit, &request);
    assert!(e.starts_with("invalid networking mode \"slirp\""), "{e}");
    request.networking = Some("none".into());
    hk.uuid = Some("x".into());
    let e = err(&hk, &request);
    assert!(e.starts_with("invalid UUID \"x\" given for the VM"), "{e}");
    request.boot = BootKind::Squashfs;
    let e = err(&s.hyperkit, &request);
    assert!(
        e.ends_with("lk-squashfs.img not found (needed to boot a kernel+squashfs)"),
        "{e}"
    );
    request.boot = BootKind::Detect;
    request.image = s.path().join("lk-nothing");
    let e = err(&s.hyperkit, &request);
    assert!(e.starts_with("no "), "{e}");
    request.image = s.path().join("lk");
    request.arch = Some(Arch::Aarch64);
    let e = err(&s.hyperkit, &request);
    assert_eq!(e, "hyperkit cannot run guests of another architecture than x86_64");
    let mut missing = s.hyperkit.clone();
    missing.binary = Some(s.path().join("no/hyperkit"));
    request.arch = None;
    assert!(matches!(
        missing.plan(&request, true),
        Err(VmError::Hyperkit(HyperkitError::PathMissing(_)))
    ));
}

#[tokio::test]
async fn a_detached_start_refuses_what_ends_with_its_starter() {
    let s = Setup::new("exit 0");
    let mut request = s.request("lk");
    request.networking = Some("vpnkit".into());
    let e = s.hyperkit.start(&request).await.unwrap_err();
    assert!(matches!(e, VmError::Hyperkit(HyperkitError::DetachUnsupported)), "{e}");
    request.networking = Some("vpnkit,/v/eth,/v/port".into());
    request.publish = vec!["2222:22".parse().unwrap()];
    let e = s.hyperkit.start(&request).await.unwrap_err();
    assert!(matches!(e, VmError::Hyperkit(HyperkitError::DetachUnsupported)), "{e}");
    assert!(
        !s.path().join("lk-state").exists(),
        "refused before touching the state dir"
    );
    assert!(!s.path().join("root/lk").exists());
}

#[tokio::test]
async fn a_foreground_run_prepares_the_state_and_records_a_failed_exit() {
    let s = Setup::new("exit 3");
    let mut request = s.request("lk");
    request.disks = vec!["size=64M".parse().unwrap()];
    request.userdata = Some(b"{\"hostname\":\"lk\"}".to_vec());
    let mut hk = s.hyperkit.clone();
    hk.console = ForegroundConsole::File;
    let mut out = Vec::new();
    let end = hk.run(&request, &mut out, Duration::from_secs(5)).await.unwrap();
    assert_eq!(end.ending, Ending::Exited("exit status: 3".into()));
    assert_eq!(end.failure.as_deref(), Some("hyperkit exited with exit status: 3"));
    let (state, record) = hk.root().open("lk").unwrap();
    let (plan, _) = hk.plan(&request, true).unwrap();
    let expected: Vec<String> = strs(&plan)
        .into_iter()
        .filter(|a| !a.contains('-') || !a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .collect();
    let got: Vec<String> = s
        .args()
        .into_iter()
        .filter(|a| !a.contains('-') || !a.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .collect();
    assert_eq!(got, expected, "the arguments, but for the UUID made for each start");
    assert_eq!(std::fs::metadata(state.dir().join("disk.raw")).unwrap().len(), 64 << 20);
    assert!(std::fs::read(state.userdata_iso()).unwrap().len() > 16 * 2048);
    assert_eq!(record.state, InstanceState::Failed);
    assert_eq!(record.failure.as_deref(), Some("hyperkit exited with exit status: 3"));
    assert_eq!((record.pid, record.owner_pid), (None, None));
    // hyperkit has exited: nothing is left that reads as a running or stale VM.
    assert!(!state.pid_file().exists() && !files::json_file(&state).exists());
    assert_eq!(state.status().unwrap(), ProcessStatus::Stopped);
    assert!(out.is_empty(), "the console went to the pty, not to the caller");
}

#[tokio::test]
async fn a_relayed_console_reaches_the_caller() {
    let s = Setup::new("printf \"Linux version 6.6\\n\" > \"$(dirname \"$1\")/tty\"; sleep 1");
    let mut out = Vec::new();
    let end = s
        .hyperkit
        .run(&s.request("lk"), &mut out, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(end.ending, Ending::GuestPoweredOff { power_button: false });
    assert_eq!(end.failure, None);
    assert_eq!(String::from_utf8(out).unwrap(), "Linux version 6.6\n");
    let record = s.hyperkit.describe("lk").await.unwrap();
    assert_eq!(record.state, InstanceState::Stopped);
}

#[tokio::test]
async fn a_stand_in_that_dies_at_once_is_a_failed_start() {
    let s = Setup::new("");
    crate::testing::write_script(&s.path().join("hyperkit"), "#!/bin/sh\necho 'bad slot' >&2\nexit 1\n");
    let e = s.hyperkit.start(&s.request("lk")).await.unwrap_err();
    let log = s.path().join("lk-state/hyperkit.log");
    assert_eq!(
        e.to_string(),
        format!(
            "hyperkit exited while starting (exit status: 1); its messages are in {}",
            log.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "bad slot\n");
    let record = s.hyperkit.describe("lk").await.unwrap();
    assert_eq!(record.state, InstanceState::Failed);
    assert!(record.failure.unwrap().starts_with("hyperkit exited while starting"));
}

/// The library-level lifecycle: two instances with different tags started through the trait,
/// listed by tag, labelled, their consoles attached, destroyed with nothing left behind.
#[tokio::test]
async fn two_instances_through_the_trait() {
    let s = Setup::new("exec -a hyperkit sleep 600");
    let hk = AnyBackend::of_kind(BackendKind::Hyperkit, s.hyperkit.root().clone()).unwrap();
    let AnyBackend::Hyperkit(mut defaults) = hk else {
        panic!("{hk:?}")
    };
    defaults.binary.clone_from(&s.hyperkit.binary);
    let hk = AnyBackend::Hyperkit(defaults);
    let mut web = s.request("web");
    web.tags = tags(&[("role", "web")]);
    let mut db = s.request("db");
    db.tags = tags(&[("role", "db")]);
    let started_web = hk.start(&web).await.unwrap();
    let started_db = hk.start(&db).await.unwrap();
    let pids = [started_web.pid.unwrap(), started_db.pid.unwrap()];
    for (record, pid) in [(&started_web, pids[0]), (&started_db, pids[1])] {
        assert_eq!(record.state, InstanceState::Running);
        assert_eq!(process_name(pid).unwrap().as_deref(), Some("hyperkit"));
        assert_eq!(record.state_dir, s.path().join(format!("{}-state", record.name)));
    }
    let root = s.path().join("root");
    assert_eq!(
        std::fs::read_link(root.join("web")).unwrap(),
        s.path().join("web-state"),
        "the PREFIX-state dir is found by name"
    );

    let listed = hk.list(&tags(&[("role", "web")])).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert_eq!(hk.list(&Tags::new()).await.unwrap().len(), 2);

    let labelled = hk.label("db", &tags(&[("zone", "a")])).await.unwrap();
    assert_eq!(labelled.tags, tags(&[("role", "db"), ("zone", "a")]));
    assert_eq!(hk.describe("db").await.unwrap().tags, labelled.tags);
    let on_disk = std::fs::read_to_string(s.path().join("db-state/instance.json")).unwrap();
    assert!(on_disk.contains("\"zone\": \"a\""), "{on_disk}");

    // The console is the pty (a file standing in for it here), unless it is on a terminal.
    let state = StateDir::new(s.path().join("web-state"), "web", BackendKind::Hyperkit);
    std::fs::write(files::tty(&state), "login: ").unwrap();
    let console = hk.console("web").await.unwrap();
    let mut seen = Vec::new();
    crate::console::relay(console, Some(crate::console::DETACH_BYTE), &mut seen)
        .await
        .unwrap();
    assert_eq!(seen, b"login: ");
    let mut json = files::read_json(&state).unwrap().unwrap();
    json.console = Console::Stdio.json_code();
    files::write_json(&state, &json).unwrap();
    let e = hk.console("web").await.unwrap_err();
    assert!(matches!(e, VmError::ConsoleUnavailable { .. }), "{e}");
    assert!(e.to_string().contains("console-ring"), "{e}");

    for name in ["web", "db"] {
        hk.destroy(name, Duration::from_secs(10)).await.unwrap();
    }
    for pid in pids {
        assert_eq!(process_name(pid).unwrap(), None, "stand-in {pid} is gone");
    }
    for name in ["web", "db"] {
        assert!(!s.path().join(format!("{name}-state")).exists(), "{name}-state");
        assert!(std::fs::symlink_metadata(root.join(name)).is_err(), "link {name}");
    }
    assert!(hk.list(&Tags::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn stopping_sends_sigterm_then_records_stopped() {
    let s = Setup::new("exec -a hyperkit sleep 600");
    let record = s.hyperkit.start(&s.request("lk")).await.unwrap();
    let stopped = s.hyperkit.stop("lk", Duration::from_secs(10)).await.unwrap();
    assert_eq!(stopped, Stopped::PoweredDown);
    assert_eq!(process_name(record.pid.unwrap()).unwrap(), None);
    let after = s.hyperkit.describe("lk").await.unwrap();
    assert_eq!((after.state, after.pid), (InstanceState::Stopped, None));
    let state = StateDir::new(s.path().join("lk-state"), "lk", BackendKind::Hyperkit);
    assert!(!state.pid_file().exists() && !files::json_file(&state).exists());
    // Started again from the same state dir, then destroyed while running.
    let again = s.hyperkit.start(&s.request("lk")).await.unwrap();
    assert_ne!(again.pid, record.pid);
    s.hyperkit.destroy("lk", Duration::from_secs(10)).await.unwrap();
    assert!(!s.path().join("lk-state").exists());
}
