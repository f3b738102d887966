// End-to-end test of the web page: `tim-node demo` runs three nodes; alice's and bob's pages in
// headless Chromium exchange a message (seen unread in bob's inbox, which survives a reload),
// become contacts (her signed name shown), revoke it, burn one, read a sealed burn-after-reading one, talk in a room, run a private room (invite, join, remove), under the API's Content Security Policy; a link with another token
// replaces the stored one only if the user agrees.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const BIN = process.env.TIM_NODE_BIN ?? new URL("../../../target/debug/tim-node", import.meta.url).pathname;
const SHOT = process.env.TIM_SCREENSHOT ?? new URL("../../../docs/screenshot.png", import.meta.url).pathname;

function startDemo() {
  const proc = spawn(BIN, ["demo"], { stdio: ["ignore", "pipe", "inherit"] });
  const nodes = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("demo did not start")), 60_000);
    createInterface({ input: proc.stdout }).on("line", (line) => {
      const m = line.match(/^\s+(alice|bob|carol)\s+(\S+)\s+account (\w+)/);
      if (m) nodes[m[1]] = { url: m[2], account: m[3] };
      if (Object.keys(nodes).length === 3) { clearTimeout(timer); resolve({ proc, nodes }); }
    });
    proc.on("exit", (code) => reject(new Error("demo exited " + code)));
  });
}

test("send, revoke, burn, burn after reading and a room message across two pages", { timeout: 180_000 }, async () => {
  const { proc, nodes } = await startDemo();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const alice = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    const bob = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    // Anything the CSP blocks (an inline script, the WebSocket) shows up here.
    const blocked = [];
    for (const page of [alice, bob]) {
      page.on("console", (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) blocked.push(m.text()); });
      page.on("pageerror", (e) => blocked.push(String(e)));
    }
    await alice.goto(nodes.alice.url);
    await bob.goto(nodes.bob.url);
    await alice.waitForSelector(`#me:has-text("${nodes.alice.account}")`);

    // Alice opens a chat with bob and sends; it appears on bob's page.
    await alice.fill("#newchat input", nodes.bob.account);
    await alice.click("#newchat button");
    await alice.fill("#compose input[name=body]", "hello from the browser");
    await alice.click("#compose button");
    await alice.waitForSelector('.msg.mine:has-text("hello from the browser")');
    // Bob's inbox lists the chat with one unread message; opening it reads it.
    await bob.waitForSelector(`#chats button[title="${nodes.alice.account}"] .unread:has-text("1")`, { timeout: 30_000 });
    await bob.click(`#chats button[title="${nodes.alice.account}"]`, { timeout: 30_000 });
    await bob.waitForSelector('.msg:has-text("hello from the browser")', { timeout: 30_000 });
    // It travelled end-to-end encrypted, and the page says so on both sides.
    await bob.waitForSelector('.msg:has-text("hello from the browser") .lock:has-text("encrypted")');
    await alice.waitForSelector('.msg.mine:has-text("hello from the browser") .lock:has-text("encrypted")');
    await bob.waitForSelector(`#chats button[title="${nodes.alice.account}"]:not(:has(.unread))`);
    // The list comes from the node, not the page: a fresh page without its saved chats shows it.
    await bob.evaluate(() => localStorage.removeItem("tim-chats"));
    await bob.reload();
    await bob.waitForSelector(`#chats button[title="${nodes.alice.account}"]`, { timeout: 30_000 });
    await bob.click(`#chats button[title="${nodes.alice.account}"]`);

    // Alice names herself and asks bob to be a contact; bob sees her name, accepts from his
    // contact list, and both list each other.
    await alice.fill("#profile input", "Alice");
    await alice.click("#profile button");
    await alice.waitForSelector('#profile button:has-text("Saved")');
    await alice.click("#addcontact");
    await bob.waitForSelector(`#contacts .contact.incoming[data-account="${nodes.alice.account}"] button:has-text("Alice")`, { timeout: 30_000 });
    await bob.waitForSelector(`#contacts .contact.incoming[data-account="${nodes.alice.account}"]`, { timeout: 30_000 });
    await bob.click(`#contacts .contact.incoming button:has-text("accept")`);
    await bob.waitForSelector(`#contacts .contact.contact[data-account="${nodes.alice.account}"]`, { timeout: 30_000 });
    await alice.waitForSelector(`#contacts .contact.contact[data-account="${nodes.bob.account}"]`, { timeout: 30_000 });
    // Alice shows herself away: bob's contact list has her amber dot.
    await alice.selectOption("#presence", "away");
    await bob.waitForSelector(`#contacts .contact[data-account="${nodes.alice.account}"] .dot.away`, { timeout: 30_000 });
    // And bob, a contact now, shows online on alice's page without waiting for an interval.
    await alice.waitForSelector(`#contacts .contact[data-account="${nodes.bob.account}"] .dot.online`, { timeout: 30_000 });
    // Bob's chat list and chat title name her now.
    await bob.waitForSelector(`#chats button[title="${nodes.alice.account}"]:has-text("@ Alice")`);
    await bob.waitForSelector('#convname:has-text("chat with Alice")');
    await bob.fill("#profile input", "Bob");
    await bob.click("#profile button");
    await alice.waitForSelector(`#chats button[title="${nodes.bob.account}"]:has-text("@ Bob")`, { timeout: 30_000 });

    // Alice revokes: both pages show the placeholder.
    await alice.click('.msg.mine:has-text("hello from the browser") button:has-text("revoke")');
    await alice.waitForSelector('.msg.gone:has-text("message revoked by me")', { timeout: 30_000 });
    await bob.waitForSelector('.msg.gone:has-text("message revoked by")', { timeout: 30_000 });
    // Bob's node confirms with a signed receipt; Alice's page updates live.
    await alice.waitForSelector('.msg.gone:has-text("message revoked by me") .deleted-on:has-text("deleted on 1 of 1")', { timeout: 30_000 });

    // Bob burns a message from alice: both pages show it burned.
    await alice.fill("#compose input[name=body]", "burn me");
    await alice.click("#compose button");
    await bob.click('.msg:has-text("burn me") button:has-text("burn")', { timeout: 30_000 });
    await bob.waitForSelector('.msg.gone:has-text("message burned by me")', { timeout: 30_000 });
    await alice.waitForSelector('.msg.gone:has-text("message burned by")', { timeout: 30_000 });

    // Burn after reading: bob's page shows a sealed message without its body until he clicks to
    // read it; then the body and the countdown, then the burned placeholder on both pages.
    await alice.selectOption("#compose select", "10");
    await alice.fill("#compose input[name=body]", "read me once");
    await alice.click("#compose button");
    await alice.selectOption("#compose select", "");
    await alice.waitForSelector('.msg.mine:has-text("read me once")');
    const reveal = await bob.waitForSelector('.msg button.reveal:has-text("click to read (burns 10 s after)")', { timeout: 30_000 });
    const sealedMid = await reveal.evaluate((b) => b.closest(".msg").dataset.mid);
    assert.ok(!(await bob.content()).includes("read me once"), "the sealed body reached bob's page");
    await reveal.click();
    await bob.waitForSelector(`.msg[data-mid="${sealedMid}"]:has-text("read me once") .countdown:has-text("burns in")`);
    await alice.waitForSelector(`.msg.mine[data-mid="${sealedMid}"]:has-text("read me once")`);
    await bob.waitForSelector(`.msg.gone[data-mid="${sealedMid}"]:has-text("message burned by me")`, { timeout: 30_000 });
    await alice.waitForSelector(`.msg.gone[data-mid="${sealedMid}"]:has-text("message burned by")`, { timeout: 30_000 });

    // A room message.
    for (const page of [alice, bob]) {
      await page.fill("#join input", "lobby");
      await page.click("#join button");
      await page.waitForSelector('#convname:has-text("# lobby")');
    }
    await alice.waitForSelector('#rooms button:has-text("lobby (")');
    await alice.waitForFunction(() => /lobby \(([1-9])/.test(document.querySelector("#rooms").textContent), null, { timeout: 30_000 });
    await alice.fill("#compose input[name=body]", "hi room");
    await alice.click("#compose button");
    await bob.waitForSelector('.msg:has-text("hi room")', { timeout: 30_000 });

    // An API error is shown clearly: bob cannot revoke alice's message.
    await bob.evaluate(() => document.querySelector('.msg:not(.mine)')?.setAttribute("data-probe", "1"));
    const mid = await bob.getAttribute('.msg[data-probe="1"]', "data-mid");
    await bob.evaluate(async (mid) => {
      const token = localStorage.getItem("tim-token");
      const r = await fetch(`/v1/messages/${mid}/revoke`, { method: "POST", headers: { Authorization: "Bearer " + token } });
      document.querySelector("#error").textContent = (await r.json()).error.message;
    }, mid);
    assert.match(await bob.textContent("#error"), /permission denied/);
    await bob.evaluate(() => { document.querySelector("#error").textContent = ""; });

    // A private room: alice founds it and invites bob; bob joins from his invitation; both see
    // the roles; alice's post reaches bob; alice removes him.
    await alice.fill("#newroom input[name=name]", "crew");
    await alice.click("#newroom button");
    await alice.waitForSelector('#convname:has-text("crew (private)")');
    await alice.waitForSelector(`#roominfo .member[data-account="${nodes.alice.account}"]:has-text("founder")`);
    await alice.fill("#invite input", nodes.bob.account);
    await alice.click("#invite button");
    await alice.waitForSelector(`#roominfo .member[data-account="${nodes.bob.account}"]:has-text("invited")`);
    await bob.waitForSelector('#invites button:has-text("Join")', { timeout: 30_000 });
    await bob.click('#invites button:has-text("Join")');
    await alice.waitForSelector(`#roominfo .member[data-account="${nodes.bob.account}"]:has-text("member")`, { timeout: 30_000 });
    await bob.waitForSelector(`#roominfo .member[data-account="${nodes.alice.account}"]:has-text("founder")`, { timeout: 30_000 });
    await alice.fill("#compose input[name=body]", "welcome to the crew");
    await alice.click("#compose button");
    await bob.waitForSelector('.msg:has-text("welcome to the crew")', { timeout: 30_000 });
    await alice.click(`#roominfo .member[data-account="${nodes.bob.account}"] button:has-text("Remove")`);
    await alice.waitForSelector(`#roominfo .member[data-account="${nodes.bob.account}"]`, { state: "detached", timeout: 30_000 });

    // The picture for docs/: alice's chat with bob, with both placeholders.
    await alice.click(`#chats button[title="${nodes.bob.account}"]`);
    await alice.waitForSelector('.msg.gone:has-text("message burned by")');
    await alice.fill("#compose input[name=body]", "see you in the lobby");
    await alice.click("#compose button");
    await alice.waitForSelector('.msg.mine:has-text("see you in the lobby")');
    await alice.screenshot({ path: SHOT });
    assert.deepEqual(blocked, []);

    // A link carrying another token: the page asks, and keeps its token if the user says no.
    const base = nodes.alice.url.replace(/\?.*$/, "");
    const good = new URL(nodes.alice.url).searchParams.get("token");
    const dialogs = [];
    const answer = (accept) => alice.once("dialog", async (d) => { dialogs.push(d.message()); await (accept ? d.accept() : d.dismiss()); });
    answer(false);
    await alice.goto(base + "?token=not-the-token");
    await alice.waitForSelector(`#me:has-text("${nodes.alice.account}")`);
    assert.equal(dialogs.length, 1);
    assert.match(dialogs[0], /different/);
    assert.equal(await alice.evaluate(() => localStorage.getItem("tim-token")), good);
    assert.ok(!alice.url().includes("token"), alice.url());

    // If the user agrees, the link's token replaces it (a wrong one then shows the API's 401).
    answer(true);
    await alice.goto(base + "?token=not-the-token");
    await alice.waitForSelector('#error:has-text("4401")');
    assert.equal(dialogs.length, 2);
    assert.equal(await alice.evaluate(() => localStorage.getItem("tim-token")), "not-the-token");
    assert.ok(!alice.url().includes("token"), alice.url());

    // Back to the right token; a link with the stored token asks nothing.
    answer(true);
    await alice.goto(nodes.alice.url);
    await alice.waitForSelector(`#me:has-text("${nodes.alice.account}")`);
    assert.equal(dialogs.length, 3);
    alice.removeAllListeners("dialog");
    alice.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
    await alice.goto(nodes.alice.url);
    await alice.waitForSelector(`#me:has-text("${nodes.alice.account}")`);
    assert.equal(dialogs.length, 3);
  } finally {
    await browser.close();
    proc.kill("SIGINT");
  }
});
