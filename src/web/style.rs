//! The pages' stylesheet: inline in each page (no external assets), readable colours in light
//! and dark (`prefers-color-scheme`; every tag and text at WCAG contrast 4.5:1 or more, checked
//! in a real browser by the page test), a layout that fits 360 to 1920 px (two columns of
//! sections on a wall screen), tables that stack into label/value rows on a phone, and a print
//! layout that keeps cards and sections whole and drops the search box.

pub const CSS: &str = r#"
:root{--ok:#1a7f37;--warn:#9a5b00;--fail:#c62828;--run:#1d4ed8;--wait:#475569;--ink:#1f2933;--muted:#5b6b7b;--line:#e3e8ee;--bg:#f6f8fa;--card:#fff;--link:#1d4ed8;--okt:#1a7f37;--warnt:#9a5b00;--failt:#c62828}
@media (prefers-color-scheme:dark){:root{--ink:#e6edf3;--muted:#9aa7b4;--line:#30363d;--bg:#0d1117;--card:#161b22;--link:#79b8ff;--okt:#56d364;--warnt:#e3b341;--failt:#ff7b72}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;padding:14px 24px;background:var(--card);border-bottom:1px solid var(--line)}
header h1{font-size:20px;margin:0}header .db{color:var(--muted);font-size:13px;overflow-wrap:anywhere}
.verdicts{margin-left:auto;display:flex;flex-wrap:wrap;gap:8px}
.verdict{padding:6px 14px;border-radius:999px;color:#fff;font-weight:700;letter-spacing:.03em;white-space:nowrap}
.verdict.ok{background:var(--ok)}.verdict.warn{background:var(--warn)}.verdict.fail{background:var(--fail)}
main{max-width:1180px;margin:0 auto;padding:18px 24px 40px}
.reasons{margin:0 0 12px;padding:10px 16px 10px 32px;border-radius:8px;background:var(--card);border:1px solid var(--line);overflow-wrap:anywhere}
.reasons h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 4px -16px}
.covers{color:var(--muted);font-size:12px;margin:0 0 16px}
.reasons li{margin:2px 0}.reasons .fail{color:var(--failt)}.reasons .warn{color:var(--warnt)}.reasons .ok{color:var(--okt)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(250px,100%),1fr));gap:14px;margin-bottom:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;min-width:0;overflow-wrap:anywhere}
.card h2,section h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 8px}
.big{font-size:26px;font-weight:650}.card.warn{border-left:6px solid var(--warn)}.card.fail{border-left:6px solid var(--fail)}.card.fail .big{color:var(--failt)}.sub{color:var(--muted);font-size:13px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:18px;min-width:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.tag{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;background:var(--wait);white-space:nowrap}
.tag.critical,.tag.fail{background:var(--fail)}.tag.low,.tag.warn{background:var(--warn)}.tag.ok{background:var(--ok)}
.tag.run{background:var(--run)}.tag.wait{background:var(--wait)}.tag.other{background:var(--line);color:var(--ink)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(420px,100%),1fr));gap:14px}
.grid2>*{min-width:0}.details{color:var(--muted);font-size:13px;overflow-wrap:anywhere}.why{color:var(--failt);font-size:13px;overflow-wrap:anywhere}
td.when{white-space:nowrap}
@media (max-width:600px){header{padding:10px 12px}main{padding:12px 10px 30px}.verdicts{margin-left:0}th,td{padding:5px 6px}
table.stack thead{display:none}table.stack tr{display:block;padding:6px 0;border-bottom:1px solid var(--line)}
table.stack td{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:0 12px;border:0;padding:2px 0;text-align:right}
table.stack td::before{content:attr(data-label);color:var(--muted);font-size:12px;text-transform:uppercase;text-align:left;flex:none}
table.stack td>div{flex-basis:100%;text-align:right}}
figure.chart{margin:0}figcaption{font-size:13px;color:var(--muted);margin-bottom:4px}
svg{width:100%;height:auto}svg .axis{stroke:#9aa5b1;stroke-width:1}svg .grid{stroke:var(--line);stroke-dasharray:3 3}
svg .line{fill:none;stroke:#2563eb;stroke-width:2}svg .dot{fill:#2563eb}svg .bar{fill:#60a5fa}svg .bar2{fill:#1e3a8a}
@media (prefers-color-scheme:dark){svg .bar2{fill:#bfdbfe}}.legend{margin:0 0 2px;font-size:13px;color:var(--muted)}.key1,.key2{display:inline-block;width:10px;height:10px;margin:0 4px 0 8px;border-radius:2px}.key1{background:#60a5fa}.key2{background:#1e3a8a}@media (prefers-color-scheme:dark){.key2{background:#bfdbfe}}svg .tick{font-size:11px;fill:var(--muted)}@media (max-width:600px){svg .tick{font-size:21px}}
.nodata{color:var(--muted);padding:30px 0;text-align:center;border:1px dashed var(--line);border-radius:6px}
.empty{color:var(--muted)}footer{color:var(--muted);font-size:12px;text-align:center;overflow-wrap:anywhere}
a{color:var(--link)}h1 a{color:inherit;text-decoration:none}code{font:13px ui-monospace,Menlo,Consolas,monospace;background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:0 4px;overflow-wrap:anywhere}
form.search{display:flex;gap:6px;flex:1 1 220px;max-width:420px}form.search input{flex:1;min-width:0;font:inherit;padding:5px 10px;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--ink)}
form.search button{font:inherit;padding:5px 12px;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--ink)}
.todo{border-left:6px solid var(--ok)}.todo.warn{border-left-color:var(--warn)}.todo.fail{border-left-color:var(--fail)}.todo>p.ok{color:var(--okt);margin:0}
.reason{padding:8px 0;border-top:1px solid var(--line)}.reason:first-of-type{border-top:0}.reason p{margin:2px 0}.headline strong{font-size:16px}
.subjects{margin:4px 0;padding-left:20px}.subjects li{margin:2px 0;overflow-wrap:anywhere}.next{color:var(--muted);font-size:14px}
.dbline{margin:0 0 18px;padding:10px 16px;border-radius:8px;background:var(--card);border:1px solid var(--line);border-left:6px solid var(--ok)}
h2.part{font-size:15px;margin:26px 0 10px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
ul.stock{list-style:none;margin:0;padding:0}.stockline{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 10px;padding:5px 0;border-bottom:1px solid var(--line)}
.stockline .sku{font-weight:600;min-width:6em}.stockline .name{flex:1 1 8em;min-width:0;overflow-wrap:anywhere}.stockline .qty{font-variant-numeric:tabular-nums}
details summary{cursor:pointer;color:var(--link);padding:6px 0}.crumbs{margin:0 0 10px}
@media (min-width:1600px){main{max-width:1800px}#admin{display:grid;grid-template-columns:1fr 1fr;gap:0 18px}#admin>h2.part,#admin>.cards{grid-column:1/-1}}
form.search{position:relative}.suggest{position:absolute;top:100%;left:0;right:0;z-index:5;list-style:none;margin:4px 0 0;padding:4px 0;background:var(--card);border:1px solid var(--line);border-radius:6px;box-shadow:0 4px 14px rgba(0,0,0,.18)}.suggest:empty{display:none}.suggest a{display:block;padding:8px 12px;color:var(--ink);text-decoration:none;overflow-wrap:anywhere}.suggest a:hover,.suggest a:focus{background:var(--bg)}.suggest b{margin-right:6px}
@media print{:root{--ink:#1f2933;--muted:#5b6b7b;--line:#d0d7de;--bg:#fff;--card:#fff;--link:#1d4ed8;--okt:#1a7f37;--warnt:#9a5b00;--failt:#c62828}header form.search,.crumbs,details summary,.suggest{display:none}details>*{display:block}details::details-content{content-visibility:visible;display:contents}body{background:#fff;color:#000}main{max-width:none;padding:0}
section,.card,.reason,.dbline,figure,tr{break-inside:avoid}.verdict,.tag{-webkit-print-color-adjust:exact;print-color-adjust:exact}meta{display:none}}
"#;
