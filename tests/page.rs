//! The status page as an operator sees it: served by a real `ora serve`, rendered by a real
//! headless Chromium at 360 and 390 px (phones), 1366 (a desk) and 1920 (a wall screen), in
//! light and dark. No horizontal scroll, no text under 11 px, every text and status tag at
//! WCAG AA contrast, chart labels inside their chart, the warehouse first with a named
//! product on the first screen, and screenshots saved under target/screenshots.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::{call, http, Sandbox, Server};

pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
}

const FLAGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--allow-file-access-from-files",
];

/// A harness page holding the saved status page in an iframe `width` px wide (a headless
/// window is never narrower than 500 px), measuring it once loaded and writing the result into
/// `<pre id="result">`.
fn harness(dir: &Path, width: u32, print: bool) -> PathBuf {
    // Print emulation: the page's `@media print` rules apply and its screen-only ones do not,
    // at the width of an A4 sheet's printable area (190 mm at 96 px an inch).
    let emulate = if print {
        "for(const sh of d.styleSheets)for(const r of [...sh.cssRules])if(r.media){if(/print/.test(r.media.mediaText))r.media.mediaText='all';else if(/screen/.test(r.media.mediaText))r.media.mediaText='not all'}"
    } else {
        ""
    };
    let script = r#"
function lum(c){const v=c.match(/[\d.]+/g).slice(0,3).map(Number).map(x=>{x/=255;return x<=0.03928?x/12.92:Math.pow((x+0.055)/1.055,2.4)});return 0.2126*v[0]+0.7152*v[1]+0.0722*v[2]}
function bg(e,w){while(e){const c=w.getComputedStyle(e).backgroundColor;const m=c.match(/[\d.]+/g);if(m&&(m.length<4||Number(m[3])>0))return c;e=e.parentElement}return 'rgb(255,255,255)'}
function ratio(a,b){const x=lum(a),y=lum(b);return (Math.max(x,y)+0.05)/(Math.min(x,y)+0.05)}
function overlaps(d){const boxes=[];const walk=d.createTreeWalker(d.body,NodeFilter.SHOW_TEXT);let n;
 while((n=walk.nextNode())){if(!n.textContent.trim()||n.parentElement.closest('svg,script,style')||!n.parentElement.checkVisibility())continue;const r=d.createRange();r.selectNodeContents(n);for(const b of r.getClientRects())if(b.width>0&&b.height>0)boxes.push({b,t:n.textContent.trim().slice(0,30)})}
 const out=[];for(let i=0;i<boxes.length;i++)for(let j=i+1;j<boxes.length;j++){const a=boxes[i].b,c=boxes[j].b;const x=Math.min(a.right,c.right)-Math.max(a.left,c.left),y=Math.min(a.bottom,c.bottom)-Math.max(a.top,c.top);if(x>1&&y>2)out.push(boxes[i].t+' / '+boxes[j].t)}return out}
document.getElementById('f').addEventListener('load',()=>{
 const w=document.getElementById('f').contentWindow, d=w.document;
 EMULATE;
 const tags=[...d.querySelectorAll('.tag,.verdict')].map(e=>({text:e.textContent,ratio:ratio(w.getComputedStyle(e).color,bg(e,w))}));
 const wide=[...d.querySelectorAll('body *')].filter(e=>!e.closest('.scroll')&&e.getBoundingClientRect().right>w.innerWidth+0.5).map(e=>e.tagName+'#'+e.id+'.'+e.className);
 const texts=[...d.querySelectorAll('body *')].filter(e=>!e.closest('svg')&&e.getClientRects().length&&[...e.childNodes].some(n=>n.nodeType===3&&n.textContent.trim())).map(e=>({text:e.textContent.trim().slice(0,40),size:parseFloat(w.getComputedStyle(e).fontSize),ratio:ratio(w.getComputedStyle(e).color,bg(e,w))}));
 const small=texts.filter(x=>x.size<11);
 const faint=texts.filter(x=>x.ratio<4.5);
 const first=d.querySelector('#attention a[href^="/products/"]');
 const whole=[...d.querySelectorAll('section,.card,figure')].filter(e=>w.getComputedStyle(e).breakInside!=='avoid').map(e=>e.tagName+'#'+e.id+'.'+e.className);
 const lines=d.querySelectorAll('.stockline');const hiddenLines=[...lines].filter(e=>!e.checkVisibility()).length;
 const search=d.querySelector('form.search');const searchShown=!!(search&&search.getClientRects().length);
 const firstProductTop=first?first.getBoundingClientRect().bottom:-1;
 const clipped=[...d.querySelectorAll('svg text')].filter(t=>{const b=t.getBBox(),v=t.ownerSVGElement.viewBox.baseVal;return b.x<v.x-0.5||b.x+b.width>v.x+v.width+0.5}).map(t=>{const b=t.getBBox();return t.textContent+" @"+Math.round(b.x)+"+"+Math.round(b.width)});
 const r=document.createElement('pre');r.id='result';
 r.textContent=JSON.stringify({innerWidth:w.innerWidth,scrollWidth:d.documentElement.scrollWidth,tags,wide,clipped,small,faint,firstProductTop,overlaps:overlaps(d),whole,hiddenLines,lines:lines.length,searchShown,dark:w.matchMedia('(prefers-color-scheme: dark)').matches,texts:texts.length});
 document.body.appendChild(r);
});"#;
    let script = script.replace("EMULATE", emulate);
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0"><iframe id="f" src="page.html" style="border:0;width:{width}px;height:2400px"></iframe><script>{script}</script></body></html>"#
    );
    let path = dir.join(format!(
        "harness-{width}{}.html",
        if print { "-print" } else { "" }
    ));
    std::fs::write(&path, html).unwrap();
    path
}

fn measure(browser: &str, profile: &Path, harness: &Path, dark: bool) -> Value {
    let out = Command::new(browser)
        .args(FLAGS)
        .args(dark.then_some("--force-dark-mode"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1400,2400")
        .arg("--dump-dom")
        .arg(format!("file://{}", harness.display()))
        .output()
        .expect("run chromium");
    result(&out.stdout)
}

/// The JSON a harness page wrote into its `<pre id="result">`, read from the dumped DOM.
fn result(dom: &[u8]) -> Value {
    let dom = String::from_utf8_lossy(dom);
    let start = dom
        .find(r#"<pre id="result">"#)
        .unwrap_or_else(|| panic!("no result in the DOM: {dom}"));
    let rest = &dom[start + r#"<pre id="result">"#.len()..];
    let json = &rest[..rest.find("</pre>").expect("end of the result")];
    let json = json
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn screenshot(browser: &str, profile: &Path, url: &str, width: u32, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(name);
    let _ = std::fs::remove_file(&png);
    let st = Command::new(browser)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},2000"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    png
}

/// A morning's state: a critical and a low product, workflows with known and unknown
/// statuses (one failed, with details that need escaping), today's KPIs, a backup, daily
/// maintenance, repeated health checks, a failed drill, and a movement dated years ahead.
fn morning() -> Sandbox {
    // A-1 (stock 10, reorder at 5) and B-2 (stock 3, reorder at 50), as the web tests seed.
    let s = crate::web::seeded();
    s.ok(&["product", "add", "C-3", "Green gizmo", "--initial", "1"]);
    s.ok(&["stock", "ship", "C-3", "1"]);
    // More low products than the page lists before "show all".
    for i in 10..22 {
        let sku = format!("L-{i}");
        let name = format!("Carton size {i}");
        s.ok(&[
            "product",
            "add",
            &sku,
            &name,
            "--reorder-point",
            "9",
            "--initial",
            "4",
        ]);
    }
    s.ok(&[
        "stock",
        "receive",
        "A-1",
        "1",
        "--date",
        "2099-01-01",
        "--allow-future",
    ]);
    s.ok(&["workflow", "set", "nightly-upload", "done"]);
    s.ok(&["workflow", "set", "label-printing", "in progress"]);
    s.ok(&["workflow", "set", "courier", "awaiting pickup by DHL"]);
    s.ok(&[
        "workflow",
        "set",
        "dock-2",
        "failed",
        "--details",
        "printer jammed at dock 2 <b>urgent</b>",
    ]);
    s.ok(&[
        "kpi",
        "record",
        &ora::model::today(),
        "--orders-today",
        "41",
        "--status",
        "green",
    ]);
    s.ok(&["backup"]);
    s.ok(&["maintain", "daily"]);
    for _ in 0..6 {
        s.run(&["health"]);
    }
    let bad = s.path("backups").join("broken.db.gz");
    std::fs::write(&bad, b"not a backup").unwrap();
    s.run(&["backups", "verify", bad.to_str().unwrap()]);
    s
}

#[test]
fn the_status_page_fits_a_phone_and_a_desk_and_says_what_needs_attention() {
    let Some(browser) = chromium() else {
        crate::util::skip(
            "the status page in Chromium",
            "no chromium (scripts/test.sh installs it)",
        );
        return;
    };
    let s = morning();
    let srv = Server::start(&s, &[]);
    for i in 0..5 {
        call(
            &srv.addr,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "A-1", "type": "Receive", "quantity": 1 + i})),
        );
    }
    let (status, _, body) = http(&srv.addr, "GET", "/", &[], b"").unwrap();
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();

    // Two verdicts, each saying what it covers; the warehouse one lists its problems.
    assert!(page.contains(r#"id="verdict""#));
    assert!(
        page.contains(r#"id="warehouse-verdict" class="verdict fail""#),
        "{page}"
    );
    for needle in [
        "1 product at or below zero",
        "13 products at or below the reorder point",
        "1 workflow failed",
        r##"<a href="#wf-dock-2">dock-2</a>"##,
        r#"<a href="/products/C-3">C-3</a>"#,
        "Next: ",
    ] {
        assert!(page.contains(needle), "{needle:?} missing");
    }
    // The warehouse comes first: what needs doing, then the database, then its details.
    let todo = page.find(r#"id="attention""#).unwrap();
    let db = page.find(r#"id="findings""#).unwrap();
    let admin = page.find(r#"id="admin""#).unwrap();
    assert!(
        todo < db && db < admin,
        "the page does not lead with the warehouse"
    );
    // Workflow details shown, escaped; every status has a meaning or a neutral tag.
    assert!(page.contains("printer jammed at dock 2 &lt;b&gt;urgent&lt;/b&gt;"));
    assert!(!page.contains("<b>urgent</b>"));
    for (status, meaning) in [
        ("done", "ok"),
        ("in progress", "run"),
        ("failed", "fail"),
        ("awaiting pickup by DHL", "other"),
    ] {
        assert!(
            page.contains(&format!(r#"data-meaning="{meaning}">{status}</span>"#)),
            "{status} is not tagged {meaning}"
        );
    }
    // The failed drill says why and about which file; six health checks are one row.
    assert!(
        page.contains("Backup restore drill"),
        "operation names in words"
    );
    assert!(page.contains("neither a SQLite database nor a gzip file"));
    assert!(page.contains("broken.db.gz"));
    assert!(
        page.contains("Health check <span class=\"details\">× 6"),
        "{page}"
    );
    assert!(!page.contains("maintain_daily") && !page.contains("backup_verify"));
    // Times in words, never raw ISO with milliseconds; the page reloads itself.
    assert!(
        !page.contains(".000Z") && !regex_like_iso(&page),
        "a raw timestamp is shown"
    );
    assert!(page.contains("just now") || page.contains("min ago"));
    assert!(page.contains(r#"<meta http-equiv="refresh" content="60">"#));
    assert!(page.contains(r#"id="generated">generated "#));
    // The movements chart: the last 30 days ending today, untouched by a date in 2099.
    let chart = &page[page.find("Movements per day").unwrap()..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    assert_eq!(chart.matches("<rect").count(), 30);
    assert!(chart.contains(">today<"));
    assert!(!chart.contains("2099"));

    // In a real browser at a phone's and a desk's width.
    let dir = s.path("browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("page.html"), &page).unwrap();
    let profile = s.path("chromium-profile");
    let looks = [
        (360u32, false, false),
        (390, true, false),
        (1366, false, false),
        (1920, true, false),
        (718, false, true),
        (718, true, true),
    ];
    for (width, dark, print) in looks {
        let m = measure(browser, &profile, &harness(&dir, width, print), dark);
        let at = format!(
            "{width} px{}{}",
            if dark { ", dark" } else { "" },
            if print { ", printed" } else { "" }
        );
        assert_eq!(m["innerWidth"], width, "{m}");
        assert_eq!(m["dark"], dark, "the colour scheme was not {at}");
        assert!(
            m["scrollWidth"].as_u64().unwrap() <= u64::from(width),
            "horizontal scroll at {at}: {m}"
        );
        assert_eq!(m["wide"], json!([]), "elements past the edge at {at}");
        assert_eq!(m["clipped"], json!([]), "chart labels clipped at {at}");
        assert_eq!(m["small"], json!([]), "text under 11 px at {at}");
        assert_eq!(m["faint"], json!([]), "text under WCAG AA contrast at {at}");
        assert_eq!(m["overlaps"], json!([]), "text over other text at {at}");
        if print {
            // Printed: cards, sections and charts are never split across sheets, every low
            // product is on paper (not behind "show all"), and the search box is left off.
            assert_eq!(m["whole"], json!([]), "may split across sheets at {at}");
            assert_eq!(m["hiddenLines"], 0, "low products left off paper: {m}");
            assert_eq!(m["searchShown"], false, "{m}");
        }
        assert!(m["texts"].as_u64().unwrap() > 50, "{m}");
        // The first screen (844 px high on a phone, 768 on a desk) names a product to act on.
        let top = m["firstProductTop"].as_f64().unwrap();
        let screen = if width < 600 { 844.0 } else { 768.0 };
        assert!(
            print || top > 0.0 && top <= screen,
            "no named product on the first screen at {at}: {top}"
        );
        let tags = m["tags"].as_array().unwrap();
        assert!(tags.len() >= 8, "{m}");
        for t in tags {
            let r = t["ratio"].as_f64().unwrap();
            assert!(r >= 4.5, "tag {} has contrast {r:.2} at {at}", t["text"]);
        }
    }
    let url = format!("http://{}/", srv.addr);
    for (width, name) in [(390, "status-390.png"), (1280, "status-1280.png")] {
        let png = screenshot(browser, &profile, &url, width, name);
        eprintln!("status page screenshot: {}", png.display());
    }
}

// Search as you type: in a real browser, the page's script asks the real server for what is
// typed (a misspelt name) and lists the products it finds under the box, each a link to its
// page, a name holding markup shown as text. Without JavaScript the box is a plain form whose
// answer lists the same products.
#[test]
fn the_search_box_suggests_products_as_you_type_and_works_without_javascript() {
    let Some(browser) = chromium() else {
        crate::util::skip(
            "search as you type in Chromium",
            "no chromium (scripts/test.sh installs it)",
        );
        return;
    };
    let s = Sandbox::new();
    for (sku, name) in [
        ("WH-1011", "Blue widget"),
        ("WH-1012", "Blue widget large"),
        ("Z-1", "Blue <b>bold</b> widget"),
        ("X-9", "Red gadget"),
    ] {
        s.ok(&["product", "add", sku, name]);
    }
    let srv = Server::start(&s, &[]);
    let (st, _, body) = http(&srv.addr, "GET", "/", &[], b"").unwrap();
    assert_eq!(st, 200);
    // Saved beside the harness (so that the harness may reach into it), with its relative
    // URLs resolved against the real server.
    let page = String::from_utf8(body).unwrap().replacen(
        "<head>",
        &format!(r#"<head><base href="http://{}/">"#, srv.addr),
        1,
    );
    let dir = s.path("browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("page.html"), page).unwrap();
    let script = r#"
document.getElementById('f').addEventListener('load',()=>{
 const d=document.getElementById('f').contentWindow.document, q=d.querySelector('input[name=q]');
 q.value='blu widgte'; q.dispatchEvent(new Event('input'));
 let tries=0; const done=()=>{const s=d.getElementById('suggest');
  if(!(s&&s.children.length)&&tries++<400){setTimeout(done,25);return}
  const r=document.createElement('pre'); r.id='result';
  r.textContent=JSON.stringify(s?[...s.children].map(li=>({href:li.querySelector('a').getAttribute('href'),text:li.textContent,html:li.innerHTML})):null);
  document.body.appendChild(r)}; done();
});"#;
    let harness = dir.join("type.html");
    std::fs::write(
        &harness,
        format!(
            r#"<!doctype html><html><body><iframe id="f" src="page.html" style="width:800px;height:600px"></iframe><script>{script}</script></body></html>"#
        ),
    )
    .unwrap();
    let out = Command::new(browser)
        .args(FLAGS)
        // The saved page (a file) asks the server for its suggestions: another origin.
        .arg("--disable-web-security")
        .arg("--virtual-time-budget=20000")
        .arg(format!("--user-data-dir={}", s.path("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", harness.display()))
        .output()
        .expect("run chromium");
    let hits = result(&out.stdout);
    let hrefs: Vec<&str> = hits
        .as_array()
        .expect("suggestions listed")
        .iter()
        .map(|h| h["href"].as_str().unwrap())
        .collect();
    for want in ["/products/WH-1011", "/products/WH-1012", "/products/Z-1"] {
        assert!(hrefs.contains(&want), "{want} not suggested: {hits}");
    }
    assert!(
        hrefs
            .iter()
            .position(|h| *h == "/products/X-9")
            .is_none_or(|i| i >= 3),
        "{hits}"
    );
    let bold = hits
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["href"] == "/products/Z-1")
        .unwrap();
    assert_eq!(bold["text"], "Z-1 Blue <b>bold</b> widget");
    assert!(
        bold["html"].as_str().unwrap().contains("&lt;b&gt;"),
        "{bold}"
    );

    // Without JavaScript: the form's own answer.
    let (st, _, body) = http(&srv.addr, "GET", "/search?q=blu+widgte", &[], b"").unwrap();
    assert_eq!(st, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains(r#"href="/products/WH-1011""#), "{body}");
}

/// Whether the text holds an ISO timestamp with seconds and a zone (2026-12-02T01:34:55).
fn regex_like_iso(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(19).any(|w| {
        w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b'T'
            && w[13] == b':'
            && w[16] == b':'
            && w.iter()
                .enumerate()
                .all(|(i, c)| [4, 7, 10, 13, 16].contains(&i) || c.is_ascii_digit())
    })
}
