//! Run the stand-in by hand: `cargo run -p roster-sim --example serve -- [ADDR] [DATA_DIR]`.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6443".into()).parse()?;
    let data_dir = args.next().map(Into::into);
    let sim = roster_sim::start(roster_sim::SimConfig { api_addr: addr, data_dir, ..roster_sim::SimConfig::default() })
        .await?;
    println!("export KUBECONFIG={}", sim.kubeconfig_path().display());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
