//! The recipe and the lifecycle against a fake `vmrun`.

use super::*;
use crate::instance::Tags;
use crate::AnyBackend;

/// A fake vmrun: logs its arguments to `calls`; `start` adds the .vmx to `running` and writes a
/// line to the VM's console; `list` prints `running`, where a VM started while a `ticks` file held
/// N stays for N more lists (each appends a console line); `stop` removes it (`stop soft` fails
/// while a `nosoft` file exists); `start` fails while `failstart` exists. A
/// `vmware-vdiskmanager` next to it logs and creates its file. Calls are serialized, as
/// concurrent ones are for the real vmrun.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        crate::testing::write_script(
            &dir.path().join("vmrun"),
            &format!(
                r#"#!/bin/sh
D='{d}'
# One call at a time: a console follower lists while others start or stop.
until mkdir "$D/busy" 2>/dev/null; do sleep 0.01; done
trap 'rmdir "$D/busy"' EXIT
echo "$*" >> "$D/calls"
touch "$D/running"
key() {{ echo "$D/ticks-$(printf %s "$1" | cksum | cut -d' ' -f1)"; }}
case "$3" in
start)
  if [ -f "$D/failstart" ]; then echo "Error: Cannot open VM: $4"; exit 255; fi
  echo "$4" >> "$D/running"
  if [ -f "$D/ticks" ]; then cp "$D/ticks" "$(key "$4")"; fi
  printf 'Linux version 6.6\n' >> "$(dirname "$4")/console.log" ;;
list)
  : > "$D/still"
  while IFS= read -r v; do
    k=$(key "$v")
    if [ -f "$k" ]; then
      t=$(cat "$k")
      if [ "$t" -le 0 ]; then rm -f "$k"; continue; fi
      echo $((t-1)) > "$k"
      printf 'tick %s\n' "$t" >> "$(dirname "$v")/console.log"
    fi
    echo "$v" >> "$D/still"
  done < "$D/running"
  mv "$D/still" "$D/running"
  echo "Total running VMs: $(grep -c . "$D/running")"; cat "$D/running" ;;
stop)
  if [ "$5" = soft ] && [ -f "$D/nosoft" ]; then echo "Error: The VMware Tools are not running"; exit 255; fi
  grep -vxF "$4" "$D/running" > "$D/still"; mv "$D/still" "$D/running" ;;
*) echo "Error: unknown command $3"; exit 255 ;;
esac
"#
            ),
        );
        crate::testing::write_script(
            &dir.path().join("vmware-vdiskmanager"),
            &format!("#!/bin/sh\necho \"vdiskmanager $*\" >> '{d}/calls'\nfor a; do last=$a; done\n: > \"$last\"\n"),
        );
        Fake { dir }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn running(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("running"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn touch(&self, name: &str, content: &str) {
        std::fs::write(self.dir.path().join(name), content).unwrap();
    }

    /// The backend driving this vmrun as Workstation, records under `root`, polling fast.
    fn backend(&self, root: &Path) -> Vmware {
        let mut vmware = Vmware::new(StateRoot::new(root));
        vmware.vmrun = Some(self.dir.path().join("vmrun"));
        vmware.product = Some(Product::Workstation);
        vmware.follow = Follow {
            poll: Duration::from_millis(5),
            list_every: Duration::from_millis(20),
        };
        vmware
    }
}

/// A temp dir with `NAME.iso` (or `.vmdk`) in it.
fn image(dir: &Path, file: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, "image").unwrap();
    path
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn runs_an_iso_and_follows_its_console_until_it_stops() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    let iso = image(img.path(), "lk.iso");
    let state = img.path().join("lk-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join(CONSOLE_FILE), "old run\n").unwrap();
    fake.touch("ticks", "2");
    let vmware = fake.backend(&img.path().join("root"));

    let mut out = Vec::new();
    let end = vmware
        .run(
            &Request::new("lk", img.path().join("lk")),
            &mut out,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(end.ending, Ending::GuestPoweredOff { power_button: false });
    // The old console was removed; the fake VM printed a line at start and one per `list`
    // while it was running.
    assert_eq!(String::from_utf8(out).unwrap(), "Linux version 6.6\ntick 2\ntick 1\n");
    let vmx = state.join(VMX_FILE);
    let v = vmx.display();
    assert_eq!(
        fake.calls(),
        [
            "-T ws list".to_string(),
            format!("-T ws start {v} nogui"),
            "-T ws list".into(),
            "-T ws list".into(),
            "-T ws list".into(),
        ]
    );
    let text = std::fs::read_to_string(&vmx).unwrap();
    assert!(
        text.contains(&format!("ide1:0.fileName = \"{}\"\n", iso.display())),
        "{text}"
    );
    assert!(text.contains(&format!(
        "serial0.fileName = \"{}\"\n",
        state.join(CONSOLE_FILE).display()
    )));
    assert!(text.contains("displayName = \"lk\"\n"), "{text}");
    // No temporary file is left next to it; the record says it stopped.
    assert_eq!(
        names(&state),
        [CONSOLE_FILE, "instance.json", "linuxkit.vmx", "lock", "record.lock"]
    );
    let record = vmware.describe("lk").await.unwrap();
    assert_eq!((record.state, record.pid), (InstanceState::Stopped, None));
}

#[tokio::test]
async fn a_detached_start_creates_the_disk_and_stops_soft() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    let vmdk = image(img.path(), "lk.vmdk");
    let mut vmware = fake.backend(&img.path().join("root"));
    vmware.gui = true;
    vmware.product = Some(Product::Fusion);
    let mut request = Request::new("lk", &vmdk);
    request.cpus = 4;
    request.memory_mib = 4096;
    request.state_dir = Some(img.path().join("st"));
    request.disks = vec!["size=2G".parse().unwrap()];
    let record = vmware.start(&request).await.unwrap();
    let st = img.path().join("st");
    let disk = st.join("disk.vmdk");
    assert_eq!((record.state, record.pid), (InstanceState::Running, None));
    assert_eq!(record.created_disks, std::slice::from_ref(&disk));
    assert!(disk.is_file());
    let v = st.join(VMX_FILE);
    assert_eq!(
        fake.calls(),
        [
            "-T fusion list".to_string(),
            format!("vdiskmanager -c -s 2048MB -a lsilogic -t 0 {}", disk.display()),
            format!("-T fusion start {} gui", v.display()),
        ]
    );
    let text = std::fs::read_to_string(&v).unwrap();
    let disks = format!(
        "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"{}\"\nscsi0:0.deviceType = \"scsi-hardDisk\"\n\
         scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"{}\"\nscsi0:1.deviceType = \"scsi-hardDisk\"\n",
        vmdk.display(),
        disk.display()
    );
    assert!(text.contains(&disks), "{text}");
    assert!(text.contains("numvcpus = \"4\"\nmemsize = \"4096\"\n"), "{text}");

    // A running VM is not started twice.
    let e = vmware.start(&request).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "a VM already runs from {}: stop it (`{} -T fusion stop {} soft`) or use another state dir",
            v.display(),
            fake.dir.path().join("vmrun").display(),
            v.display()
        )
    );
    // Stopped soft, then started again: the disk is reused.
    assert_eq!(
        vmware.stop("lk", Duration::from_secs(1)).await.unwrap(),
        Stopped::PoweredDown
    );
    assert_eq!(vmware.describe("lk").await.unwrap().state, InstanceState::Stopped);
    let again = vmware.start(&request).await.unwrap();
    assert!(again.created_disks.is_empty());
    // After the refused start: the soft stop (between `list`s that check it runs), then the start.
    let acting: Vec<String> = fake.calls()[4..]
        .iter()
        .filter(|c| *c != "-T fusion list")
        .cloned()
        .collect();
    assert_eq!(
        acting,
        [
            format!("-T fusion stop {} soft", v.display()),
            format!("-T fusion start {} gui", v.display()),
        ]
    );
    // No VMware Tools: soft fails, hard follows.
    fake.touch("nosoft", "");
    assert_eq!(vmware.stop("lk", Duration::from_secs(1)).await.unwrap(), Stopped::Quit);
    assert!(fake.calls().last().unwrap().ends_with(" hard"));
    let e = vmware.stop("lk", Duration::from_secs(1)).await.unwrap_err();
    assert!(e.to_string().contains("cannot stop an instance that is stopped"), "{e}");
}

#[tokio::test]
async fn vmrun_errors_are_recorded() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    image(img.path(), "lk.iso");
    fake.touch("failstart", "");
    let vmware = fake.backend(&img.path().join("root"));
    let e = vmware
        .start(&Request::new("lk", img.path().join("lk")))
        .await
        .unwrap_err();
    let vmx = img.path().join("lk-state").join(VMX_FILE);
    assert!(matches!(e, VmError::Vmware(VmwareError::CommandFailed { .. })), "{e}");
    let expected = format!(
        "`{} -T ws start {} nogui` failed (exit status: 255): Error: Cannot open VM: {}",
        fake.dir.path().join("vmrun").display(),
        vmx.display(),
        vmx.display()
    );
    assert_eq!(e.to_string(), expected);
    let record = vmware.describe("lk").await.unwrap();
    assert_eq!(record.state, InstanceState::Failed);
    assert_eq!(record.failure.as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn bad_requests_fail_before_anything_is_written() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    image(img.path(), "lk.iso");
    let vmware = fake.backend(&img.path().join("root"));
    let mut request = Request::new("lk", img.path().join("lk"));
    let err = |request: &Request| vmware.plan(request).unwrap_err().to_string();
    request.memory_mib = 1001;
    assert_eq!(
        err(&request),
        "memory size 1001 MiB: VMware needs a memory size in MiB that is a multiple of 4 and at least 4"
    );
    request.memory_mib = 1024;
    request.disks = vec!["file=/x/d.qcow2,size=1G".parse().unwrap()];
    assert_eq!(
        err(&request),
        "disk /x/d.qcow2: VMware needs a VMDK disk (got format qcow2); give it a .vmdk name or the vmdk format"
    );
    request.disks.clear();
    request.publish = vec!["80:80".parse().unwrap()];
    assert_eq!(err(&request), "vmware cannot publish ports");
    request.publish.clear();
    request.userdata = Some(b"{}".to_vec());
    assert_eq!(err(&request), "vmware cannot pass userdata to the guest");
    request.userdata = None;
    request.networking = Some("vmnet8".into());
    assert!(err(&request).starts_with("unknown VMware networking \"vmnet8\""));
    request.networking = None;
    request.boot = BootKind::Kernel;
    assert!(err(&request).starts_with("VMware cannot boot a kernel+initrd directly"));
    request.boot = BootKind::Detect;
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // A missing disk without a size fails after `vmrun list`, before anything is started.
    request.disks = vec![format!("file={}/missing.vmdk", img.path().display()).parse().unwrap()];
    let e = vmware.start(&request).await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "disk {}/missing.vmdk does not exist: give it a size to create it",
            img.path().display()
        )
    );
    assert_eq!(fake.calls(), ["-T ws list"]);
    assert!(!img.path().join("lk-state").join(VMX_FILE).exists());
    let mut missing = vmware.clone();
    missing.vmrun = Some(img.path().join("no-vmrun"));
    request.disks.clear();
    assert!(matches!(
        missing.plan(&request),
        Err(VmError::Vmware(VmwareError::VmrunPathMissing(_)))
    ));
}

/// The library-level lifecycle: two instances with different tags started through the trait,
/// listed by tag, labelled, one's console followed, both destroyed with nothing left behind.
#[tokio::test]
async fn two_instances_through_the_trait() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    let root = img.path().join("root");
    let vmware = AnyBackend::Vmware(fake.backend(&root));
    let mut web = Request::new("web", image(img.path(), "web.iso"));
    web.tags = tags(&[("role", "web")]);
    let mut db = Request::new("db", image(img.path(), "db.vmdk"));
    db.tags = tags(&[("role", "db")]);
    db.disks = vec!["size=1G".parse().unwrap()];
    for request in [&web, &db] {
        let record = vmware.start(request).await.unwrap();
        assert_eq!(
            (record.state, record.backend),
            (InstanceState::Running, BackendKind::Vmware)
        );
        let dir = img.path().join(format!("{}-state", request.name));
        assert_eq!(record.state_dir, dir);
        assert_eq!(std::fs::read_link(root.join(&request.name)).unwrap(), dir);
    }
    assert_eq!(fake.running().len(), 2);

    let listed = vmware.list(&tags(&[("role", "web")])).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["web"]);
    assert_eq!(listed[0].state, InstanceState::Running);
    let labelled = vmware.label("db", &tags(&[("zone", "a")])).await.unwrap();
    assert_eq!(labelled.tags, tags(&[("role", "db"), ("zone", "a")]));
    assert_eq!(vmware.describe("db").await.unwrap().tags, labelled.tags);
    let on_disk = std::fs::read_to_string(img.path().join("db-state/instance.json")).unwrap();
    assert!(on_disk.contains("\"zone\": \"a\""), "{on_disk}");

    // The console: the file from its start, until the VM stops (here: once `web` is stopped).
    let console = vmware.console("web").await.unwrap();
    let follower = tokio::spawn(async move {
        let mut seen = Vec::new();
        crate::console::relay(console, None, &mut seen).await.map(|_| seen)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        vmware.stop("web", Duration::from_secs(1)).await.unwrap(),
        Stopped::PoweredDown
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(seen).unwrap(), "Linux version 6.6\n");
    let e = vmware.console("web").await.unwrap_err();
    assert!(matches!(e, VmError::ConsoleUnavailable { .. }), "{e}");

    for name in ["web", "db"] {
        vmware.destroy(name, Duration::from_secs(1)).await.unwrap();
    }
    assert!(fake.running().is_empty(), "{:?}", fake.running());
    for name in ["web", "db"] {
        assert!(!img.path().join(format!("{name}-state")).exists(), "{name}-state");
        assert!(std::fs::symlink_metadata(root.join(name)).is_err(), "link {name}");
    }
    assert!(vmware.list(&Tags::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn destroy_keeps_created_disks_when_asked() {
    let fake = Fake::new();
    let img = tempfile::tempdir().unwrap();
    let vmware = fake.backend(&img.path().join("root"));
    let mut request = Request::new("lk", image(img.path(), "lk.iso"));
    request.disks = vec!["size=1G".parse().unwrap()];
    request.keep_disks = true;
    vmware.start(&request).await.unwrap();
    vmware.destroy("lk", Duration::from_secs(1)).await.unwrap();
    assert_eq!(names(&img.path().join("lk-state")), ["disk.vmdk"]);
    assert!(std::fs::symlink_metadata(img.path().join("root/lk")).is_err());
}
