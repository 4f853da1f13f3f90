//! The scenarios. Each drives the agent only through the Kata protocol,
//! creates its own sandbox and destroys it; a call the agent answers
//! UNIMPLEMENTED makes the scenario SKIP.

use std::path::Path;
use std::time::Duration;

use ttrpc::Code;

use crate::ctx::{check, expect_code, mark, ok, pod, running, storage, Ctx, Outcome, Verdict, READ_BOUND};

/// The scenarios, by name, with what each proves.
pub const ALL: &[(&str, &str)] = &[
    (
        "lifecycle",
        "sandbox, pause, workload, exec, stdin→stdout round trip, wait, remove, destroy",
    ),
    (
        "pause_rootfs_never_mounted",
        "a pause whose rootfs was never mounted is created, removed, and the sandbox destroyed",
    ),
    (
        "remove_twice",
        "a second RemoveContainer of a removed container succeeds",
    ),
    ("destroy_twice", "a second DestroySandbox succeeds"),
    (
        "destroy_with_running_workloads",
        "DestroySandbox stops and removes running workloads",
    ),
    (
        "remove_after_init_exited",
        "a container whose init already exited is removed",
    ),
    (
        "remove_while_exec_runs",
        "a container is removed while an exec'd process still runs",
    ),
    (
        "bad_storage_source_then_retry",
        "a create with a missing block device fails, leaves nothing, and a retry with the same id succeeds",
    ),
    (
        "bad_fstype_then_retry",
        "a create with an unknown filesystem type fails, and the retry succeeds",
    ),
    (
        "missing_executable_then_retry",
        "a container whose binary is missing fails to start, is removed, and the id is reusable",
    ),
    (
        "error_codes",
        "NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT where Kata semantics want them",
    ),
    (
        "long_poll",
        "WaitProcess waits without a timeout; ReadStdout answers empty at EOF; an empty WriteStdin closes stdin",
    ),
    (
        "hotplugged_disks",
        "a rootfs on a virtio-blk disk named by PCI path, a volume on a virtio-scsi disk named by SCSI address, the disk as a device in the container",
    ),
    (
        "guest_pull",
        "remote-hypervisor mode as runtime-rs sends it: the sandbox container pulled as \"pause\", a workload image pulled by the agent from a registry, run, exec, remove, destroy",
    ),
];

/// Runs scenario `name`.
pub async fn run(name: &str, c: &Ctx<'_>) -> Outcome {
    let k = &c.calls;
    match name {
        "lifecycle" => {
            pod(c, "conf-life").await?;
            running(c, "work").await?;
            ok(k.exec("work", "cat", &["cat"]).await, "ExecProcess")?;
            ok(k.write("work", "cat", b"round trip\n").await, "WriteStdin")?;
            ok(k.write("work", "cat", b"").await, "WriteStdin (close)")?;
            let out = ok(k.read_all("work", "cat").await, "ReadStdout")?;
            check(
                out == b"round trip\n",
                format!("stdout {:?}", String::from_utf8_lossy(&out)),
            )?;
            check(
                ok(k.wait("work", "cat").await, "WaitProcess")? == 0,
                "cat did not exit 0",
            )?;
            ok(k.remove("work").await, "RemoveContainer")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "pause_rootfs_never_mounted" => {
            ok(k.sandbox("conf-nm").await, "CreateSandbox")?;
            ok(
                k.pause(Some(&c.never_mounted), &[]).await,
                "a pause whose rootfs was never mounted",
            )?;
            running(c, "work").await?;
            ok(k.remove("work").await, "RemoveContainer (workload)")?;
            ok(k.remove("pause").await, "RemoveContainer (pause)")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "remove_twice" => {
            pod(c, "conf-rm2").await?;
            running(c, "work").await?;
            ok(k.remove("work").await, "RemoveContainer")?;
            ok(k.remove("work").await, "a second RemoveContainer")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "destroy_twice" => {
            pod(c, "conf-d2").await?;
            ok(k.destroy().await, "DestroySandbox")?;
            ok(k.destroy().await, "a second DestroySandbox")
        }
        "destroy_with_running_workloads" => {
            pod(c, "conf-drun").await?;
            running(c, "app-a").await?;
            running(c, "app-b").await?;
            ok(k.destroy().await, "DestroySandbox with workloads running")
        }
        "remove_after_init_exited" => {
            pod(c, "conf-exit").await?;
            ok(k.create("work", &c.rootfs, &["true"]).await, "CreateContainer")?;
            ok(k.start("work").await, "StartContainer")?;
            check(ok(k.wait("work", "").await, "WaitProcess")? == 0, "true did not exit 0")?;
            ok(k.remove("work").await, "RemoveContainer of an exited container")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "remove_while_exec_runs" => {
            pod(c, "conf-rmexec").await?;
            running(c, "work").await?;
            ok(k.exec("work", "exec1", &["sleep", mark()]).await, "ExecProcess")?;
            ok(k.remove("work").await, "RemoveContainer with an exec running")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "bad_storage_source_then_retry" | "bad_fstype_then_retry" => {
            pod(c, "conf-bad").await?;
            let mp = c.mnt.join(name);
            let bad = if name.starts_with("bad_storage") {
                storage("blk", "/dev/bosun-conformance-missing", "ext4", &mp)
            } else {
                storage("blk", "/dev/null", "bosunconformancefs", &mp)
            };
            let spec = bosun_client::spec::container(Some(&c.rootfs), &["sleep".into(), mark().into()]);
            check(
                k.create_spec("work", spec.clone(), vec![bad]).await.is_err(),
                "the bad storage was accepted",
            )?;
            ok(
                k.create_spec("work", spec, vec![storage("ephemeral", "tmpfs", "tmpfs", &mp)])
                    .await,
                "the retry with the same id",
            )?;
            ok(k.start("work").await, "StartContainer")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "missing_executable_then_retry" => {
            pod(c, "conf-noexe").await?;
            let created = k.create("work", &c.rootfs, &["/bosun/conformance/missing"]).await;
            let failed = created.is_err() || k.start("work").await.is_err();
            check(failed, "a missing executable started")?;
            let _ = k.remove("work").await;
            running(c, "work").await?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "error_codes" => {
            pod(c, "conf-codes").await?;
            running(c, "work").await?;
            ok(k.create("done", &c.rootfs, &["true"]).await, "CreateContainer")?;
            ok(k.start("done").await, "StartContainer")?;
            let _ = k.wait("done", "").await;
            expect_code(
                k.start("nope").await,
                Code::NOT_FOUND,
                "StartContainer of a missing container",
            )?;
            expect_code(
                k.signal("nope", "", 15).await,
                Code::NOT_FOUND,
                "SignalProcess to a missing container",
            )?;
            expect_code(
                k.wait("work", "ghost").await,
                Code::NOT_FOUND,
                "WaitProcess of a missing exec id",
            )?;
            expect_code(k.start("work").await, Code::FAILED_PRECONDITION, "StartContainer twice")?;
            expect_code(
                k.exec("done", "exec1", &["true"]).await,
                Code::FAILED_PRECONDITION,
                "ExecProcess in a stopped container",
            )?;
            expect_code(
                k.start("../etc").await,
                Code::INVALID_ARGUMENT,
                "an invalid container id",
            )?;
            let bad_root = bosun_client::spec::container(Some(Path::new("rootfs/../../etc")), &["true".into()]);
            expect_code(
                k.create_spec("badpath", bad_root, vec![]).await,
                Code::INVALID_ARGUMENT,
                "a rootfs path with '..'",
            )?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "long_poll" => {
            pod(c, "conf-poll").await?;
            running(c, "work").await?;
            // Timed from before ExecProcess: the process starts after that
            // instant and sleeps 2 s, so an agent that waits answers at 2 s
            // or later however slow the machine is; load can only add time.
            let t = std::time::Instant::now();
            ok(k.exec("work", "slow", &["sleep", "2"]).await, "ExecProcess")?;
            check(
                ok(k.wait("work", "slow").await, "WaitProcess")? == 0,
                "sleep did not exit 0",
            )?;
            check(
                t.elapsed() >= Duration::from_millis(1990),
                format!(
                    "WaitProcess answered after {:?}, before the 2 s process ended",
                    t.elapsed()
                ),
            )?;
            ok(k.exec("work", "echo", &["echo", "x"]).await, "ExecProcess")?;
            let out = ok(k.read_all("work", "echo").await, "ReadStdout")?;
            check(
                out == b"x\n",
                "ReadStdout did not end with an empty read after the output",
            )?;
            ok(k.exec("work", "cat", &["cat"]).await, "ExecProcess")?;
            ok(k.write("work", "cat", b"").await, "WriteStdin (empty)")?;
            let st = tokio::time::timeout(Duration::from_secs(10), k.wait("work", "cat")).await;
            check(
                matches!(st, Ok(Ok(0))),
                "an empty WriteStdin did not close stdin (cat kept running)",
            )?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "guest_pull" => {
            let Some(image) = &c.image else {
                return Err(Verdict::Skip("no registry (--registry or --image)".into()));
            };
            use bosun_client::spec;
            ok(k.sandbox("conf-pull").await, "CreateSandbox")?;
            let pause = spec::guest_pull_request("conf-pull-pause", "pause", spec::pause(None), true);
            ok(
                k.send_container(&pause).await,
                "CreateContainer (pause, image_guest_pull \"pause\")",
            )?;
            ok(k.start("conf-pull-pause").await, "StartContainer (pause)")?;
            let args = [
                "sh".to_string(),
                "-c".into(),
                format!("echo pulled-ok; exec sleep {}", mark()),
            ];
            let wl = spec::guest_pull_request("conf-pull-wl", image, spec::container(None, &args), false);
            ok(
                k.send_container(&wl).await,
                &format!("CreateContainer (image_guest_pull {image})"),
            )?;
            ok(k.start("conf-pull-wl").await, "StartContainer")?;
            ok(
                k.read_until("conf-pull-wl", "conf-pull-wl", "pulled-ok", READ_BOUND)
                    .await,
                "ReadStdout",
            )?;
            ok(
                k.exec("conf-pull-wl", "conf-pull-e", &["echo", "exec-ok"]).await,
                "ExecProcess",
            )?;
            let out = ok(k.read_all("conf-pull-wl", "conf-pull-e").await, "ReadStdout (exec)")?;
            check(
                out == b"exec-ok\n",
                format!("exec printed {:?}", String::from_utf8_lossy(&out)),
            )?;
            ok(k.remove("conf-pull-wl").await, "RemoveContainer")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        "hotplugged_disks" => {
            let Some(d) = &c.disks else {
                return Err(Verdict::Skip("no disks (--blk-pci-path, --scsi-addr)".into()));
            };
            pod(c, "conf-disks").await?;
            // As the Go runtime sends a block rootfs and a block volume:
            // the disk by its bus address, mounted where the spec expects.
            let root = "/run/kata-containers/shared/containers/disks/rootfs";
            let vol = "/run/kata-containers/sandbox/storage/conf-vol";
            let storages = vec![
                storage("blk", &d.blk_pci_path, "ext4", Path::new(root)),
                storage("scsi", &d.scsi_addr, "ext4", Path::new(vol)),
            ];
            let mut spec = bosun_client::spec::container(
                Some(Path::new(root)),
                &[
                    "sh".into(),
                    "-c".into(),
                    "cat /etc/hostname /data/hello; head -c 4096 /dev/xda | wc -c".into(),
                ],
            );
            let mut m = bosun_protocols::oci::Mount::new();
            (m.destination, m.type_, m.source, m.options) =
                ("/data".into(), "bind".into(), vol.into(), vec!["rbind".into()]);
            spec.Mounts.push(m);
            let mut dev = bosun_protocols::agent::Device::new();
            (dev.type_, dev.id, dev.container_path) = ("blk".into(), d.blk_pci_path.clone(), "/dev/xda".into());
            ok(
                k.create_full("disks", spec, storages, vec![dev]).await,
                "CreateContainer (disks by address)",
            )?;
            ok(k.start("disks").await, "StartContainer")?;
            let out = String::from_utf8_lossy(&ok(k.read_all("disks", "disks").await, "ReadStdout")?).into_owned();
            check(
                out == "disk-rootfs\nhello from scsi\n4096\n",
                format!("rootfs, volume and device from the disks: {out:?}"),
            )?;
            check(
                ok(k.wait("disks", "disks").await, "WaitProcess")? == 0,
                "the process failed",
            )?;
            ok(k.remove("disks").await, "RemoveContainer")?;
            ok(k.destroy().await, "DestroySandbox")
        }
        other => Err(Verdict::Fail(format!("unknown scenario {other}"))),
    }
}
