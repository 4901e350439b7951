// Interoperability check with an independent DICOM implementation (dcmjs-dimse, pure
// JavaScript, no DCMTK): C-ECHO, then C-STORE of each file in its own transfer syntax.
//   node interop.js HOST PORT CALLED_AE FILE...
// Prints one line per request ("echo: 0x0000", "store FILE: 0x0000 ts=...") and exits 0
// only when every request got Success.
'use strict';
const dimse = require('dcmjs-dimse');
const { Client } = dimse;
const { CEchoRequest, CStoreRequest } = dimse.requests;
const { Status } = dimse.constants;

const [host, port, calledAe, ...files] = process.argv.slice(2);
if (!host || !port || !calledAe) {
  console.error('usage: node interop.js HOST PORT CALLED_AE FILE...');
  process.exit(2);
}

let failures = 0;
const hex = (s) => '0x' + s.toString(16).padStart(4, '0');
const client = new Client();
const echo = new CEchoRequest();
echo.on('response', (r) => {
  console.log('echo: ' + hex(r.getStatus()));
  if (r.getStatus() !== Status.Success) failures++;
});
client.addRequest(echo);
for (const file of files) {
  const store = new CStoreRequest(file);
  store.on('response', (r) => {
    console.log('store ' + file + ': ' + hex(r.getStatus()));
    if (r.getStatus() !== Status.Success) failures++;
  });
  client.addRequest(store);
}
client.on('associationAccepted', (association) => {
  for (const pc of association.getPresentationContexts()) {
    const ctx = association.getPresentationContext(pc.id);
    console.log('context ' + ctx.getAbstractSyntaxUid() + ' result=' + ctx.getResult() +
                ' ts=' + (ctx.getAcceptedTransferSyntaxUid() || '-'));
  }
});
client.on('associationRejected', (reject) => {
  console.log('association rejected: ' + JSON.stringify(reject));
  process.exitCode = 1;
});
client.on('networkError', (e) => {
  console.log('network error: ' + e);
  process.exitCode = 1;
});
client.on('closed', () => {
  const answered = 1 + files.length;
  if (failures > 0 && !process.exitCode) process.exitCode = 1;
  console.log('done: ' + answered + ' request(s), ' + failures + ' failure(s)');
});
client.send(host, Number(port), 'DCMJSSCU', calledAe);
