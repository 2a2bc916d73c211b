//! The pages' one script: search as you type. It lists, under the search box, the products
//! `/api/search` finds for what is typed (each a link to its page) and does nothing else; the
//! box stays a plain form, so every page works the same without JavaScript. Never writes, never
//! reads anything but `/api/search`, never builds markup from text (only `textContent`).

/// Inline at the end of each page's body.
pub const SUGGEST: &str = r#"
(()=>{const f=document.querySelector('form.search');if(!f||!window.fetch)return;
const q=f.querySelector('input[name=q]'),box=document.createElement('ul');
box.id='suggest';box.className='suggest';box.setAttribute('aria-label','Products like what is typed');
f.appendChild(box);q.setAttribute('autocomplete','off');let timer=0,asked=0;
const show=(hits)=>box.replaceChildren(...hits.map(h=>{const li=document.createElement('li'),a=document.createElement('a'),s=document.createElement('b');
a.href='/products/'+encodeURIComponent(h.sku);s.textContent=h.sku;a.append(s,' '+h.product_name);li.append(a);return li}));
q.addEventListener('input',()=>{clearTimeout(timer);timer=setTimeout(async()=>{const v=q.value.trim(),n=++asked;
if(v.length<2){show([]);return}
try{const r=await fetch('/api/search?limit=8&q='+encodeURIComponent(v));if(!r.ok)return;const a=await r.json();if(n===asked)show(a.hits||[])}catch(e){}},120)});
q.addEventListener('keydown',e=>{if(e.key==='Escape')show([])});})();
"#;
