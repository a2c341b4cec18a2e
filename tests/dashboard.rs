//! The dashboard of `dpplan serve` in a real browser (headless Chromium over WebDriver) and
//! over plain HTTP: the pages show real runs of a simulated fleet, statuses change live
//! without a reload, every action asks first, does what it says (the run's log shows it) and
//! is refused without a sign-in; the session cookie and the cross-site defence. Screenshots
//! of each page at 1280 and 390 pixels wide go to target/dashboard-screenshots/.

use crate::engine::World;
use crate::serve::{
    beyond_loopback, client, finished, fleet, get, post, status_becomes, write_plan, Serve, ADHOC,
    TOKEN,
};
use crate::support::browser::Browser;
use crate::support::fleet::FleetFile;
use fantoccini::Locator;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One browser at a time: Chromium is heavy on a 2-core machine, and the tests beside these
/// must keep their pace.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// serve's test fleet with SLOW1-3 quiescing in 2.5 s: a run of `slow` takes seconds, time
/// enough to open its page or interrupt it from a browser under load.
fn slower_fleet() -> FleetFile {
    crate::serve::fleet_with_slow("2500ms")
}

const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens `path` at both widths: the page fits the width (tables scroll inside their own
/// box) and a screenshot of each goes under target/.
async fn look(b: &Browser, url: &str, path: &str, name: &str) {
    for (w, h) in WIDTHS {
        b.resize(w, h).await;
        b.client.goto(&format!("{url}{path}")).await.unwrap();
        assert!(
            b.until(
                "return document.documentElement.getAttribute('data-ready') === '1';",
                Duration::from_secs(10)
            )
            .await,
            "{path} never became ready"
        );
        let overflow = b
            .eval("return document.documentElement.scrollWidth - window.innerWidth;")
            .await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{path} at {w} px is wider than the window by {overflow} px"
        );
        let png = b.client.screenshot().await.unwrap();
        std::fs::write(shots().join(format!("{name}-{w}.png")), png).unwrap();
    }
    b.resize(1280, 900).await;
}

/// The text of the first element `css` finds.
async fn text(b: &Browser, css: &str) -> String {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_show_a_real_run_its_tasks_files_and_log() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let u = &s.url;
    let (_, body) = post(&format!("{u}/api/plans/adhoc/runs"), Some(TOKEN), "").await;
    let run = body["run"].as_u64().unwrap();
    assert_eq!(finished(&s, run).await["run"]["status"], "COMPLETED");
    let (_, body) = post(&format!("{u}/api/plans/withdown/runs"), Some(TOKEN), "").await;
    let warned = body["run"].as_u64().unwrap();
    assert_eq!(finished(&s, warned).await["run"]["status"], "WARNING");

    let _one = ONE_BROWSER.lock().await;
    let b = Browser::start(1280, 900).await;
    // The runs page lists both runs, newest first; the status filter narrows it.
    b.client.goto(&format!("{u}/runs")).await.unwrap();
    let rows = texts(&b, "#runs tbody tr").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("withdown") && rows[0].contains("WARNING"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("adhoc") && rows[1].contains("COMPLETED"),
        "{rows:?}"
    );
    b.client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("WARNING")
        .await
        .unwrap();
    b.client
        .find(Locator::Css("form.filters button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(moved(&b, "/runs").await, "/runs?plan=&status=WARNING");
    let rows = texts(&b, "#runs tbody tr").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("withdown"));
    // Times are shown in the browser's zone, the UTC on hover.
    let title = b
        .eval("return document.querySelector('#runs time').title;")
        .await;
    assert!(title.as_str().unwrap().ends_with("Z (UTC)"), "{title}");

    // Drill in: the run, its tasks, a task with its firmware, files and log.
    b.client.goto(&format!("{u}/runs")).await.unwrap();
    b.client
        .find(Locator::LinkText(&run.to_string()))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(moved(&b, "/runs").await, format!("/runs/{run}"));
    let tasks = texts(&b, "#task-table tbody tr").await;
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.contains("SUCCEEDED")), "{tasks:?}");
    assert!(tasks[0].contains("QA1"), "{tasks:?}");
    b.client
        .find(Locator::LinkText("QA1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        moved(&b, &format!("/runs/{run}")).await,
        format!("/runs/{run}/tasks/1")
    );
    let h1 = text(&b, "h1").await;
    assert!(h1.contains("task 1") && h1.contains("QA1"), "{h1}");
    let files = texts(&b, "#file-table tbody tr").await;
    assert!(!files.is_empty());
    let (_, api_task) = get(&format!("{u}/api/runs/{run}/tasks/1")).await;
    for f in api_task["files"].as_array().unwrap() {
        let (path, sum) = (f["path"].as_str().unwrap(), f["sha256"].as_str().unwrap());
        assert!(
            files
                .iter()
                .any(|row| row.contains(path) && row.contains(sum)),
            "{path} {sum} not in {files:?}"
        );
    }
    let version = api_task["firmware"]["version"].as_str().unwrap();
    let page = b.client.source().await.unwrap();
    assert!(page.contains(version), "firmware {version} not shown");
    let log = texts(&b, "#log-table tbody tr").await;
    assert!(log.iter().any(|l| l.contains("quiesce")), "{log:?}");

    // The log page's filter.
    b.client
        .goto(&format!("{u}/runs/{run}/log?q=unquiesce"))
        .await
        .unwrap();
    let log = texts(&b, "#log-table tbody tr").await;
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|l| l.to_lowercase().contains("unquiesce")),
        "{log:?}"
    );

    // The overview: plans with their last run, devices with their last backup; DOWN1 never
    // backed up is marked, in words as well as colour.
    b.client.goto(&format!("{u}/")).await.unwrap();
    let devices = texts(&b, "table[aria-labelledby=devices] tbody tr").await;
    let row = |name: &str| {
        devices
            .iter()
            .find(|d| d.starts_with(name))
            .unwrap()
            .clone()
    };
    assert!(row("QA1").contains("FRESH"), "{devices:?}");
    assert!(row("DOWN1").contains("NEVER"), "{devices:?}");
    let plans = texts(&b, "table[aria-labelledby=plans] tbody tr").await;
    assert!(
        plans
            .iter()
            .any(|p| p.starts_with("adhoc") && p.contains(&format!("run {run}"))),
        "{plans:?}"
    );

    // The controls are reached with the keyboard: Tab from the top gets to the first plan's
    // Run now button, and Enter on it asks for the confirmation.
    let mut reached = false;
    for _ in 0..40 {
        let focused = b.client.active_element().await.unwrap();
        focused.send_keys("\u{E004}").await.unwrap();
        let now = b
            .eval(
                "const e = document.activeElement; return e.tagName + ' ' + e.textContent.trim();",
            )
            .await;
        if now == "BUTTON Run now" {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached a Run now button");
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    assert!(b
        .client
        .get_alert_text()
        .await
        .unwrap()
        .starts_with("Start plan adhoc now?"));
    b.client.dismiss_alert().await.unwrap();

    for (path, name) in [
        ("/".to_string(), "overview"),
        ("/runs".to_string(), "runs"),
        (format!("/runs/{warned}"), "run"),
        (format!("/runs/{run}/tasks/1"), "task"),
        (format!("/runs/{run}/log"), "log"),
        ("/signin".to_string(), "signin"),
    ] {
        look(&b, u, &path, name).await;
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_status_changes_on_the_page_while_the_run_goes() {
    let w = World::new(slower_fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let u = &s.url;
    let _one = ONE_BROWSER.lock().await;
    let b = Browser::start(1280, 900).await;
    let (_, body) = post(&format!("{u}/api/plans/slow/runs"), Some(TOKEN), "").await;
    let run = body["run"].as_u64().unwrap();
    // Open the page once the run has its tasks (expansion probes the devices first).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, a) = get(&format!("{u}/api/runs/{run}/activities/1")).await;
        if a["tasks"].as_array().is_some_and(|t| t.len() == 6) {
            break;
        }
        assert!(Instant::now() < deadline, "run {run} has no tasks: {a}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.client.goto(&format!("{u}/runs/{run}")).await.unwrap();
    assert!(
        b.until(
            "return document.documentElement.getAttribute('data-ready') === '1';",
            Duration::from_secs(10)
        )
        .await
    );
    b.eval("window.sameDocument = true; return true;").await;
    let before = texts(&b, "#task-table tbody tr .st").await;
    assert_eq!(before.len(), 6);
    assert!(
        before.iter().any(|s| s != "SUCCEEDED"),
        "the run ended before the page opened: {before:?}"
    );
    let all_done = "return [...document.querySelectorAll('#task-table tbody tr .st')]\
        .every(e => e.textContent === 'SUCCEEDED')\
        && document.getElementById('run-' + document.body.dataset.run + '-status')\
        .textContent === 'COMPLETED';";
    assert!(
        b.until(all_done, Duration::from_secs(60)).await,
        "statuses on the page: {:?}; the run: {}",
        texts(&b, "#task-table tbody tr .st").await,
        finished(&s, run).await
    );
    // The same document all along: no reload.
    assert_eq!(b.eval("return window.sameDocument === true;").await, true);
    let banner = b
        .client
        .find(Locator::Id("live"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(banner.contains("ended COMPLETED"), "{banner}");
    b.close().await;
}

/// Where the browser is: path and query.
async fn location(b: &Browser) -> String {
    let url = b.client.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Waits until the browser has left `from` and the new page has loaded; returns where it is.
async fn moved(b: &Browser, from: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = location(b).await;
        if now != from && b.eval("return document.readyState;").await == "complete" {
            return now;
        }
        assert!(Instant::now() < deadline, "the browser stayed at {from}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Clicks the button `css`, answers the confirmation (`accept`), and returns the page's
/// path after it (where the form led, when accepted).
async fn press(b: &Browser, css: &str, accept: bool) -> String {
    let from = location(b).await;
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = b.client.get_alert_text().await.unwrap();
    assert!(text.contains('?'), "the confirmation: {text}");
    if accept {
        b.client.accept_alert().await.unwrap();
        moved(b, &from).await
    } else {
        b.client.dismiss_alert().await.unwrap();
        location(b).await
    }
}

/// Types `text` into the field `#id` and presses Enter; returns where the form led.
async fn submit(b: &Browser, id: &str, text: &str) -> String {
    let from = location(b).await;
    let field = b.client.find(Locator::Id(id)).await.unwrap();
    field.send_keys(text).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap();
    moved(b, &from).await
}

async fn log_of(u: &str, run: u64) -> String {
    get(&format!("{u}/api/runs/{run}/log")).await.1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_asks_first_does_what_it_says_and_needs_a_sign_in() {
    let w = World::new(slower_fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let u = &s.url;
    let _one = ONE_BROWSER.lock().await;
    let b = Browser::start(1280, 900).await;
    let runs = || async { get(&format!("{u}/api/runs")).await.1 };
    let slow_now = "form[action='/plans/slow/run'] button";

    // Not signed in: the button asks, then the server refuses; nothing starts.
    b.client.goto(&format!("{u}/")).await.unwrap();
    press(&b, slow_now, true).await;
    let h1 = text(&b, "h1").await;
    assert_eq!(h1, "Not signed in");
    assert_eq!(runs().await, serde_json::json!([]));

    // Sign in: a wrong token is refused, the right one returns to the page.
    b.client
        .goto(&format!("{u}/signin?next=/runs"))
        .await
        .unwrap();
    assert_eq!(submit(&b, "token", "wrong").await, "/signin");
    let error = b.client.find(Locator::Css(".notice.error")).await.unwrap();
    assert!(error
        .text()
        .await
        .unwrap()
        .contains("not this serve's token"));
    assert_eq!(submit(&b, "token", TOKEN).await, "/runs");

    // Run now: dismissing the confirmation does nothing; accepting starts the run.
    b.client.goto(&format!("{u}/")).await.unwrap();
    assert_eq!(press(&b, slow_now, false).await, "/");
    assert_eq!(runs().await, serde_json::json!([]));
    let at = press(&b, slow_now, true).await;
    let a: u64 = at
        .strip_prefix("/runs/")
        .and_then(|r| r.strip_suffix("?done=started"))
        .unwrap_or_else(|| panic!("{at}"))
        .parse()
        .unwrap();
    assert!(log_of(u, a)
        .await
        .contains("run now: the dashboard, from 127.0.0.1"));

    // Interrupt it; cancel it (an interrupted run releases what it owes and ends CANCELLED).
    press(&b, "#action-interrupt", true).await;
    status_becomes(&s, a, "INTERRUPTED").await;
    b.client.goto(&format!("{u}/runs/{a}")).await.unwrap();
    press(&b, "#action-cancel", true).await;
    assert_eq!(finished(&s, a).await["run"]["status"], "CANCELLED");
    assert!(log_of(u, a).await.contains("cancel: the dashboard"));
    w.assert_clean();

    // Retry the failed (cancelled) tasks: a new run.
    b.client.goto(&format!("{u}/runs/{a}")).await.unwrap();
    let at = press(&b, "#action-retry", true).await;
    let retried: u64 = at
        .strip_prefix("/runs/")
        .and_then(|r| r.strip_suffix("?done=retry"))
        .unwrap_or_else(|| panic!("{at}"))
        .parse()
        .unwrap();
    assert!(retried > a);
    finished(&s, retried).await;
    assert!(log_of(u, retried)
        .await
        .contains(&format!("retry of run {a}: the dashboard")));

    // Resume: another run, interrupted, then resumed to the end.
    b.client.goto(&format!("{u}/")).await.unwrap();
    let at = press(&b, slow_now, true).await;
    let c: u64 = at
        .strip_prefix("/runs/")
        .and_then(|r| r.strip_suffix("?done=started"))
        .unwrap()
        .parse()
        .unwrap();
    let at = press(&b, "#action-interrupt", true).await;
    assert_eq!(at, format!("/runs/{c}?done=interrupt"));
    status_becomes(&s, c, "INTERRUPTED").await;
    b.client.goto(&format!("{u}/runs/{c}")).await.unwrap();
    press(&b, "#action-resume", true).await;
    assert_eq!(finished(&s, c).await["run"]["status"], "COMPLETED");
    assert!(log_of(u, c).await.contains("resume: the dashboard"));

    // Signed out, the buttons are refused again.
    b.client.goto(&format!("{u}/runs/{c}")).await.unwrap();
    b.client
        .find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(moved(&b, &format!("/runs/{c}")).await, "/");
    let who = b.client.find(Locator::Css("header .who")).await.unwrap();
    assert_eq!(who.text().await.unwrap(), "Sign in");
    let before = runs().await.as_array().unwrap().len();
    press(&b, slow_now, true).await;
    let h1 = text(&b, "h1").await;
    assert_eq!(h1, "Not signed in");
    assert_eq!(runs().await.as_array().unwrap().len(), before);
    b.close().await;
    w.assert_clean();
}

/// A form's body.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Signs in over HTTP; returns the `Set-Cookie` header and the session's form token.
async fn sign_in(u: &str) -> (String, String) {
    let _ = client(); // installs the TLS provider reqwest needs for any client
    let r = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{u}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN), ("next", "/")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = client()
        .get(format!("{u}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(csrf.len(), 64);
    (set, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_posts_need_the_session_its_form_token_and_this_site() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let u = &s.url;
    let (set, csrf) = sign_in(u).await;
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let act = |cookie: Option<String>, csrf: String, origin: Option<String>| async move {
        let mut r = client()
            .post(format!("{u}/plans/adhoc/run"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", &csrf)]));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().await.unwrap().status().as_u16()
    };
    // No session, no form token, another site's origin: all refused, nothing started.
    assert_eq!(act(None, csrf.clone(), None).await, 401);
    assert_eq!(act(Some(cookie.clone()), String::new(), None).await, 401);
    assert_eq!(act(Some(cookie.clone()), "0".repeat(64), None).await, 401);
    assert_eq!(
        act(
            Some(cookie.clone()),
            csrf.clone(),
            Some("http://evil.example".into())
        )
        .await,
        401
    );
    assert_eq!(get(&format!("{u}/api/runs")).await.1, serde_json::json!([]));
    // The API's POSTs still want the bearer token: the cookie is not enough there.
    let r = client()
        .post(format!("{u}/api/plans/adhoc/runs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Everything right: 303 to the new run.
    let r = client()
        .post(format!("{u}/plans/adhoc/run"))
        .header("cookie", &cookie)
        .header("origin", u.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert!(r.url().path().starts_with("/runs/"), "{}", r.url());
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        get(&format!("{u}/api/runs"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let run = get(&format!("{u}/api/runs")).await.1[0]["id"]
        .as_u64()
        .unwrap();
    finished(&s, run).await;

    // Pages are read without a sign-in on loopback, and forbid framing.
    let r = client()
        .get(format!("{u}/runs/{run}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(
        client()
            .get(format!("{u}/runs/nope"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        client()
            .get(format!("{u}/runs/999"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_dashboard_reads_and_refuses_every_action() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start_with(w.dir.path(), "p.dpplan", None, &[], false);
    let u = &s.url;
    let page = client()
        .get(format!("{u}/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("has no API token"), "{page}");
    let r = client()
        .post(format!("{u}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", "anything")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = client()
        .post(format!("{u}/plans/adhoc/run"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap().contains("actions need a token"));
    let overview = client()
        .get(format!("{u}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(overview.contains("Read-only") && overview.contains("adhoc"));
}

/// Kills the child at the end of the test, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_page_needs_the_sign_in_and_the_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port, ca) = beyond_loopback(dir.path());
    let _serve = Killed(child);
    let _ = client();
    let tls = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let r = tls.get(format!("{base}/runs?plan=x")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/signin?next=%2Fruns%3Fplan%3Dx");
    for open in ["/signin", "/assets/app.css", "/assets/app.js"] {
        let r = tls.get(format!("{base}{open}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    let r = tls
        .post(format!("{base}/signin"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", TOKEN), ("next", "/runs?plan=x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/runs?plan=x");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let r = tls
        .get(format!("{base}/runs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The session reads the API (the pages' live stream); the API's POSTs still want the
    // bearer token.
    let r = tls
        .get(format!("{base}/api/runs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = tls.get(format!("{base}/api/runs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = tls
        .post(format!("{base}/api/plans/x/runs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
