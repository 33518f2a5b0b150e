//! The instance lifecycle through the library alone (no CLI): two qemu instances booting the test
//! guest under TCG, started, listed by tag, labelled, described from a fresh backend (as a
//! restarted daemon would), and destroyed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmm::machine::DiskSpec;
use vmm::qemu::Qemu;
use vmm::{AnyBackend, Backend, InstanceState, Request, StateRoot, Tags, VmError};

use crate::support::alive;
use crate::support::guest::{self, marker};

/// Upper bound for a guest to reach a marker; only guards against hangs (TCG on a busy machine).
const BOOT_BOUND: Duration = Duration::from_secs(180);

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn request(name: &str, image: PathBuf, pairs: &[(&str, &str)]) -> Request {
    let mut request = Request::new(name, image);
    request.accel = Some("tcg".into());
    request.memory_mib = 256;
    request.networking = Some("none".into());
    request.disks = vec!["size=16M".parse::<DiskSpec>().expect("disk")];
    request.tags = tags(pairs);
    request
}

/// Waits until the guest's console log shows `ready`, so that it answers the power button.
fn wait_ready(state_dir: &Path) {
    let log = state_dir.join("console.log");
    let deadline = Instant::now() + BOOT_BOUND;
    while !std::fs::read_to_string(&log).is_ok_and(|text| text.contains(marker::READY)) {
        assert!(Instant::now() < deadline, "guest never got ready: {log:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_qemu_instances_are_started_listed_labelled_and_destroyed_through_the_trait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let root = StateRoot::new(dir.path().join("state"));
    let backend = AnyBackend::Qemu(Qemu::new(root.clone()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut web = request("web", guest::write_guest(&out, "web"), &[("role", "web")]);
        web.logical_id = Some("10.0.0.5".into());
        let mut db = request("db", guest::write_guest(&out, "db"), &[("role", "db")]);
        db.keep_disks = true;
        let web_started = backend.start(&web).await.expect("start web");
        let db_started = backend.start(&db).await.expect("start db");
        for started in [&web_started, &db_started] {
            assert_eq!(started.state, InstanceState::Running);
            assert!(alive(started.pid.expect("pid")), "{started:?}");
            assert_eq!(started.owner_pid, None, "detached");
        }
        assert_eq!(web_started.logical_id.as_deref(), Some("10.0.0.5"));

        // A second start of a running name is refused, and changes nothing.
        let again = backend.start(&web).await.expect_err("already running");
        assert!(matches!(again, VmError::State(_)), "{again}");

        let webs = backend.list(&tags(&[("role", "web")])).await.expect("list");
        assert_eq!(webs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);
        let all = backend.list(&Tags::new()).await.expect("list all");
        assert_eq!(all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["db", "web"]);

        let labelled = backend.label("web", &tags(&[("zone", "a")])).await.expect("label");
        assert_eq!(labelled.tags, tags(&[("role", "web"), ("zone", "a")]));
        // What a restarted process sees: the records on disk, reconciled with the processes.
        let fresh = AnyBackend::for_instance(&root, "web").expect("backend of web");
        let described = fresh.describe("web").await.expect("describe");
        assert_eq!(described.tags, tags(&[("role", "web"), ("zone", "a")]));
        assert_eq!(described.state, InstanceState::Running);
        assert_eq!(described.pid, web_started.pid);
        let zone = fresh.list(&tags(&[("zone", "a")])).await.expect("list by the new tag");
        assert_eq!(zone.len(), 1);

        wait_ready(&web_started.state_dir);
        wait_ready(&db_started.state_dir);
        let db_disk = db_started.created_disks.first().cloned().expect("db's disk");
        assert!(db_disk.exists());
        for (name, started) in [("web", &web_started), ("db", &db_started)] {
            backend.destroy(name, Duration::from_secs(60)).await.expect("destroy");
            assert!(!alive(started.pid.expect("pid")), "qemu of {name} is gone");
            let e = backend.describe(name).await.expect_err("destroyed");
            assert!(e.to_string().starts_with(&format!("no instance named `{name}`")), "{e}");
        }
        assert!(!web_started.state_dir.exists(), "web's state is gone");
        assert!(db_disk.exists(), "db asked to keep its disks");
        let left: Vec<_> = std::fs::read_dir(&db_started.state_dir)
            .expect("db's state dir keeps the disk")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(left, [db_disk]);
        assert!(backend.list(&Tags::new()).await.expect("list").is_empty());
    });
}

#[test]
fn a_foreground_run_records_its_end_and_a_stop_of_a_stopped_instance_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let root = StateRoot::new(dir.path().join("state"));
    let backend = AnyBackend::Qemu(Qemu::new(root));
    let cmdline = format!("{} {}", guest::CMDLINE, guest::POWEROFF_OPTION);
    let mut request = request("fg", guest::write_guest_with_cmdline(&out, "fg", &cmdline), &[]);
    request.disks.clear();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut console = Vec::new();
        let end = backend
            .run(&request, &mut console, Duration::from_secs(30))
            .await
            .expect("run");
        assert_eq!(end.ending, vmm::Ending::GuestPoweredOff { power_button: false });
        assert_eq!(end.failure, None);
        assert!(String::from_utf8_lossy(&console).contains(marker::POWEROFF));
        let record = backend.describe("fg").await.expect("describe");
        assert_eq!(
            (record.state, record.pid, record.owner_pid),
            (InstanceState::Stopped, None, None)
        );
        let e = backend
            .stop("fg", Duration::from_secs(1))
            .await
            .expect_err("not running");
        assert!(
            matches!(e, VmError::Transition { ref source, .. } if source.state == InstanceState::Stopped),
            "{e}"
        );
    });
}
