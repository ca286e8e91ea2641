// A real ethers v6 client against the gateway's JSON-RPC endpoint.
// Usage: node ethers_client.mjs URL TOKEN; prints one JSON object.
import { ethers } from "ethers";

const [url, token] = process.argv.slice(2);
const request = new ethers.FetchRequest(url);
request.setHeader("authorization", `Bearer ${token}`);
const provider = new ethers.JsonRpcProvider(request, undefined, { staticNetwork: true, batchMaxCount: 1 });

// ganache --wallet.deterministic account 0.
const wallet = new ethers.Wallet("0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d", provider);
const receiver = "0x22d491Bde2303f2f43325b2108D26f1eAbA1e32b";

const network = await provider.getNetwork();
const before = await provider.getBalance(receiver);
const tx = await wallet.sendTransaction({ to: receiver, value: 777n });
const receipt = await tx.wait();
const after = await provider.getBalance(receiver);
let refused = null;
try {
  await provider.send("debug_traceTransaction", [tx.hash]);
} catch (error) {
  refused = error.error?.message ?? error.message;
}
console.log(JSON.stringify({
  chain_id: Number(network.chainId),
  block_number: await provider.getBlockNumber(),
  balance_delta: Number(after - before),
  tx_status: receipt.status,
  refused,
}));
