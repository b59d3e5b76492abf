// The page's driver: gathers the documents (files or URLs), hands them to the WebAssembly
// verifier and draws its report. Text from the documents is only ever set as textContent.
import init, { inspect } from './pkg/cloister_web.js';

const $ = (id) => document.getElementById(id);

async function bytesOf(fileId, url) {
  const file = $(fileId).files[0];
  if (file) return new Uint8Array(await file.arrayBuffer());
  if (!url) return undefined;
  const response = await fetch(url, { credentials: 'omit', cache: 'no-store' });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function show(answer) {
  const result = $('result');
  const verdict = $('verdict');
  const warning = $('warning');
  const steps = $('steps');
  steps.replaceChildren();
  warning.hidden = true;
  if (answer.error !== undefined) {
    result.dataset.state = 'error';
    verdict.dataset.accepted = 'false';
    verdict.textContent = `Not inspected: ${answer.error}`;
    return;
  }
  if (answer.insecure_root) {
    warning.hidden = false;
    warning.textContent = 'INSECURE emulated anchor (ARK sha256 ' + answer.insecure_root +
      '): this proves nothing about real hardware.';
  }
  verdict.dataset.accepted = String(answer.accepted);
  verdict.textContent = `${answer.accepted ? 'ACCEPTED' : 'REFUSED'} — ` +
    `${answer.platform ?? 'unparsed bundle'} under the ${answer.anchor} anchor, ` +
    `at ${new Date(answer.verified_at * 1000).toISOString()}`;
  for (const check of answer.checks) {
    const li = document.createElement('li');
    li.dataset.step = check.step;
    li.dataset.status = check.status;
    li.dataset.refusal = check.refusal;
    const name = document.createElement('span');
    name.className = 'step';
    name.textContent = `${check.step}: ${check.status}`;
    const detail = document.createElement('span');
    detail.className = 'detail';
    detail.textContent = check.detail;
    li.append(name, detail);
    if (check.refusal) {
      const refusal = document.createElement('code');
      refusal.className = 'refusal';
      refusal.textContent = check.refusal;
      li.append(refusal);
    }
    steps.append(li);
  }
  result.dataset.state = 'done';
}

async function run(params) {
  $('result').dataset.state = 'running';
  try {
    const bundle = await bytesOf('bundle-file', params.bundle);
    const reference = await bytesOf('reference-file', params.reference);
    if (!bundle || !reference) throw new Error('an evidence bundle and reference values are needed');
    const anchor = params.anchor || 'hardware';
    const ark = anchor === 'insecure-emulated' ? await bytesOf('ark-file', params.ark) : undefined;
    const logProof = await bytesOf('log-proof-file', params.logProof);
    const options = {
      anchor,
      nonce: params.nonce || '',
      at: params.at ? Number(params.at) : Math.floor(Date.now() / 1000),
      witness_keys: params.witnessKeys,
    };
    if (params.logKey) options.log_key = params.logKey;
    if (params.insecureNoWitness) options.insecure_no_witness = true;
    if (params.quorum !== '' && params.quorum !== undefined && params.quorum !== null) {
      options.quorum = Number(params.quorum);
    }
    show(JSON.parse(inspect(bundle, reference, JSON.stringify(options), ark, logProof)));
  } catch (e) {
    show({ error: String(e.message ?? e) });
  }
}

function fromForm() {
  return {
    bundle: $('bundle-url').value.trim(),
    reference: $('reference-url').value.trim(),
    anchor: document.querySelector('input[name=anchor]:checked').value,
    ark: $('ark-url').value.trim(),
    logKey: $('log-key').value.trim(),
    witnessKeys: $('witness-keys').value.split('\n').map((k) => k.trim()).filter(Boolean),
    quorum: $('quorum').value,
    insecureNoWitness: $('insecure-no-witness').checked,
    logProof: $('log-proof-url').value.trim(),
    nonce: $('nonce').value.trim(),
    at: $('at').value,
  };
}

// The same inputs from the page's address (?bundle=URL&reference=URL&anchor=…&ark=URL&at=…
// &nonce=…&log_key=…&witness=…&quorum=…&insecure_no_witness=yes&log_proof=URL): a link that shows one verification.
function fromQuery(q) {
  return {
    bundle: q.get('bundle'),
    reference: q.get('reference'),
    anchor: q.get('anchor') || 'hardware',
    ark: q.get('ark'),
    logKey: q.get('log_key'),
    witnessKeys: q.getAll('witness'),
    quorum: q.get('quorum'),
    insecureNoWitness: q.get('insecure_no_witness') === 'yes',
    logProof: q.get('log_proof'),
    nonce: q.get('nonce'),
    at: q.get('at'),
  };
}

await init();
$('form').addEventListener('submit', (event) => {
  event.preventDefault();
  run(fromForm());
});
const query = new URLSearchParams(window.location.search);
if (query.has('bundle')) {
  const params = fromQuery(query);
  $('bundle-url').value = params.bundle;
  $('reference-url').value = params.reference ?? '';
  run(params);
}
