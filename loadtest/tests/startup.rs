//! The start of a call on a clean loopback link: one single-layer camera (1.5 Mbit/s, more than
//! the server's starting bandwidth estimate affords) and thirty viewers who join together. No
//! video may be paused for bandwidth or freeze while the estimates ramp up; the start is measured
//! (no warm-up).

mod common;

use std::time::Duration;

use common::{free_port, run_loadtest, start_server};

#[test]
fn a_single_layer_camera_starts_for_thirty_viewers_without_pauses_or_freezes() {
    let port = free_port();
    let server = start_server(port);
    let args = [
        "--video-publishers",
        "1",
        "--subscribers",
        "30",
        "--simulcast",
        "off",
        "--publishers-subscribe",
        "false",
        "--duration",
        "10s",
        "--warmup",
        "0s",
        "--max-loss",
        "1",
        "--max-freezes",
        "0",
    ];
    let run = run_loadtest(&server, port, &args, Duration::from_secs(60));
    let report = run.passed();
    let stdout = &run.stdout;
    let states = report["stream_states"].to_string();
    assert!(
        !states.contains("bandwidth"),
        "videos were paused for bandwidth: {states}\n{stdout}"
    );
    let video = report["by_kind"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kind"] == "video"))
        .expect("video summary");
    assert_eq!(video["tracks"], 30, "{stdout}");
    assert!(
        video["first_frame"]["tracks"].as_u64() == Some(30),
        "first frame measured for every viewer: {stdout}"
    );
}
