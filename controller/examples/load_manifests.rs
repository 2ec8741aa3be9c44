//! The reading half of `roster dns --objects` start-up, alone: loads a manifest path into a cluster
//! state and prints what it holds. Run it under callgrind to count the instructions reading costs
//! (bench/README.md, "Start-up"):
//!
//! `valgrind --tool=callgrind target/release/examples/load_manifests /tmp/roster-bench/data/s10000-p10-c10000/kube-objects.json`

use std::path::PathBuf;

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: load_manifests PATH");
        std::process::exit(2);
    };
    match roster_controller::manifests::load_path(&path) {
        Ok(state) => println!(
            "{} namespaces, {} services, {} endpoint slices, {} endpoints, {} pods",
            state.namespaces.len(),
            state.services.len(),
            state.endpoint_slices.len(),
            state.endpoint_slices.values().map(|s| s.endpoints.len()).sum::<usize>(),
            state.pods.len()
        ),
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(1);
        }
    }
}
