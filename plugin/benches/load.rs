//! Load on loopback: 20 instance records, then 50 calls a second (Describe and Label, alternating)
//! for 30 s from concurrent clients speaking raw HTTP over the plugin's socket. Prints the
//! Provision latency to the returned ID and the p50/p99/max latency of the calls, and checks that
//! nothing was lost (every label is on its instance, every call answered without error).
//!
//! `cargo bench -p plugin --bench load` (`LOAD_SECONDS`, `LOAD_RATE` change the defaults).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{instance_plugin, Connection, UNREACHABLE};

const INSTANCES: usize = 20;
const CLIENTS: usize = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let seconds = env_or("LOAD_SECONDS", 30);
    let rate = env_or("LOAD_RATE", 50);
    let dir = tempfile::tempdir().unwrap();
    let plugin = instance_plugin(dir.path());
    let mut c = plugin.connect();

    let mut provision = Vec::new();
    let mut ids = Vec::new();
    for i in 0..INSTANCES {
        let asked = Instant::now();
        let result = c.ok(
            "Instance.Provision",
            json!({"Spec": {"Properties": {"Moby": UNREACHABLE}, "Tags": {"group": "load", "n": i.to_string()}}}),
        );
        provision.push(asked.elapsed());
        ids.push(result["ID"].as_str().unwrap().to_string());
    }
    provision.sort();
    // Every record there before the load starts.
    let listed = c.ok(
        "Instance.DescribeInstances",
        json!({"Tags": {"group": "load"}, "Properties": true}),
    );
    assert_eq!(listed["Descriptions"].as_array().unwrap().len(), INSTANCES);

    let ids = Arc::new(ids);
    let (jobs, queue) = mpsc::channel::<(usize, Instant)>();
    let queue = Arc::new(Mutex::new(queue));
    let (done, results) = mpsc::channel::<(bool, Duration)>();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let done = done.clone();
            let ids = Arc::clone(&ids);
            let socket = plugin.socket.clone();
            std::thread::spawn(move || {
                let mut connection = Connection::open(&socket);
                loop {
                    let job = queue.lock().unwrap().recv();
                    let Ok((n, due)) = job else { break };
                    let label = n % 2 == 1;
                    if label {
                        let id = &ids[n % ids.len()];
                        connection.ok(
                            "Instance.Label",
                            json!({"Instance": id, "Labels": {format!("k{n}"): "v"}}),
                        );
                    } else {
                        let found = connection.ok(
                            "Instance.DescribeInstances",
                            json!({"Tags": {"group": "load"}, "Properties": true}),
                        );
                        assert_eq!(found["Descriptions"].as_array().unwrap().len(), INSTANCES);
                    }
                    // Latency from when the call was due, so that a backlog counts.
                    done.send((label, due.elapsed())).unwrap();
                }
            })
        })
        .collect();
    drop(done);

    let start = Instant::now();
    let total = seconds * rate;
    let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap();
    for n in 0..total {
        let due = start + interval * u32::try_from(n).unwrap();
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        jobs.send((usize::try_from(n).unwrap(), due)).unwrap();
    }
    drop(jobs);
    for worker in workers {
        worker.join().unwrap();
    }
    let elapsed = start.elapsed();
    let mut describe: Vec<Duration> = Vec::new();
    let mut label: Vec<Duration> = Vec::new();
    for (is_label, latency) in results {
        if is_label {
            label.push(latency);
        } else {
            describe.push(latency);
        }
    }

    // Nothing lost: every label is on its instance. (A new connection: the plugin closes one idle
    // for 30 s, as InfraKit's client expects.)
    let mut c = plugin.connect();
    let found = c.ok(
        "Instance.DescribeInstances",
        json!({"Tags": {"group": "load"}, "Properties": true}),
    );
    let mut labels = 0;
    for d in found["Descriptions"].as_array().unwrap() {
        labels += d["Tags"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with('k'))
            .count();
    }
    assert_eq!(labels, label.len(), "every label kept");

    println!(
        "instances: {INSTANCES}; provision to ID: p50 {:?}, max {:?}",
        percentile(&provision, 0.5),
        provision[INSTANCES - 1]
    );
    println!(
        "load: {} calls in {elapsed:.1?} ({:.1}/s) from {CLIENTS} clients; all answered, {labels} labels kept",
        describe.len() + label.len(),
        (describe.len() + label.len()) as f64 / elapsed.as_secs_f64()
    );
    for (name, mut latencies) in [("DescribeInstances", describe), ("Label", label)] {
        latencies.sort();
        println!(
            "{name}: {} calls, p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );
    }
}
