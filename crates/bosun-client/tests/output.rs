//! Output and exit statuses are never lost at a fast exit (kata-containers
//! issue #6714: the output of a process that exits at once went missing in
//! the Kata agent's relay): processes that write 1 MiB to stdout and a
//! little to stderr and exit at once, their bytes compared whole and in
//! order, their status checked — read as they run, and read only after
//! they have exited (nobody reading while they write and exit).

mod common;

use common::pod::started;

/// Runs (1,000 unless BOSUN_FAST_EXIT_RUNS says).
fn runs() -> usize {
    std::env::var("BOSUN_FAST_EXIT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// What `seq 1 N` prints.
fn seq(n: usize) -> Vec<u8> {
    (1..=n).map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

#[test]
#[ignore = "needs root"]
fn a_thousand_fast_exits_lose_no_byte_and_no_status() {
    let (pod, rootfs) = started("fastexit", false);
    pod.create("w", common::pod::spec(Some(&rootfs), &["sleep", "300"]))
        .unwrap();
    pod.start_c("w").unwrap();
    // 160,000 lines: 1,008,895 bytes, the kernel's default pipe (64 KiB)
    // many times over, and within bosun's 1 MiB output pipe: the runs that
    // wait for the exit before reading need it to fit (past it the process
    // waits for a reader; `restart_io.rs` writes more, read as it runs).
    let (out_want, err_want) = (seq(160_000), seq(1000));
    assert!(out_want.len() > 960 << 10 && out_want.len() < 1 << 20);
    let n = runs();
    for i in 0..n {
        let exec_id = format!("e{i}");
        let code = i % 200 + 1;
        pod.exec(
            "w",
            &exec_id,
            &["sh", "-c", &format!("seq 1 160000; seq 1 1000 >&2; exit {code}")],
        )
        .unwrap_or_else(|e| panic!("run {i}: exec: {e:?}"));
        // Every other run: wait for the exit first, read after.
        let status = if i % 2 == 1 {
            Some(pod.wait("w", &exec_id).unwrap())
        } else {
            None
        };
        let out = pod.read_all("w", &exec_id, false).unwrap();
        let err = pod.read_all("w", &exec_id, true).unwrap();
        let status = status.unwrap_or_else(|| pod.wait("w", &exec_id).unwrap());
        assert!(
            out == out_want,
            "run {i}: stdout {} bytes, {} expected; first difference at {:?}",
            out.len(),
            out_want.len(),
            out.iter().zip(&out_want).position(|(a, b)| a != b)
        );
        assert_eq!(err, err_want, "run {i}: stderr");
        assert_eq!(status, code as i32, "run {i}: status");
    }
    eprintln!("{n} fast exits: every byte and every status");
    pod.remove("w").unwrap();
    pod.destroy().unwrap();
}
