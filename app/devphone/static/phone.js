// Dev phone: text the bot as any number. Everything a texter or the bot wrote is put on
// the page with textContent, never as HTML. Numbers and texts travel only in POST bodies.
// A reply sent later (through the Messages API) arrives by polling the inbox, which also
// says while one is on its way: the page shows "typing" until it comes or the server stops
// waiting (MODEL_TIMEOUT_SECONDS after the text).
"use strict";

(function () {
  const POLL_MS = 2000;
  const WAITING_POLL_MS = 1000;
  const phone = document.getElementById("phone");
  const thread = document.getElementById("thread");
  const status = document.getElementById("status");
  const optState = document.getElementById("opt-state");
  const numberForm = document.getElementById("number-form");
  const numberInput = document.getElementById("number");
  const compose = document.getElementById("compose");
  const body = document.getElementById("body");
  const mediaUrl = document.getElementById("media-url");
  const attach = document.getElementById("attach");
  const sendButton = document.getElementById("send");
  const typing = document.getElementById("typing");

  let number = numberInput.value.trim();
  let generation = 0; // bumped when the number changes, so late answers for the old one are dropped
  let sending = false;
  let polling = false;
  let sends = 0; // bumped by each send, so an inbox asked for before it cannot end its wait
  let waiting = false;
  let waitSeconds = 0;
  let botsBeforeWait = 0;
  let timer = 0;
  const items = new Map(); // message id -> <li>

  async function post(url, payload) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
      credentials: "same-origin",
      cache: "no-store",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = { error: "the server answered HTTP " + response.status };
    }
    if (!response.ok && !data.error) {
      data.error = "the server answered HTTP " + response.status;
    }
    return data;
  }

  function say(text, isError) {
    status.textContent = text || "";
    status.classList.toggle("error", Boolean(isError));
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function clock(iso) {
    if (!iso) {
      return "";
    }
    const moment = new Date(iso);
    if (Number.isNaN(moment.getTime())) {
      return "";
    }
    return moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function metaLine(message) {
    const parts = [message.encoding, plural(message.segments, "segment")];
    const time = clock(message.time);
    if (time) {
      parts.push(time);
    }
    if (message.status) {
      parts.push(message.status);
    }
    if (message.fallback) {
      parts.push("fallback: " + message.fallback);
    }
    if (message.unanswered) {
      parts.push("not answered: " + message.unanswered.replace(/_/g, " "));
    }
    if (message.via) {
      parts.push(message.via);
    }
    return parts.join(" · ");
  }

  function fill(li, message) {
    li.className = "bubble " + (message.role === "user" ? "me" : "bot");
    li.replaceChildren();
    const who = document.createElement("span");
    who.className = "visually-hidden";
    who.textContent = message.role === "user" ? "You: " : "Bot: ";
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = message.text;
    text.prepend(who);
    li.append(text);
    for (const url of message.media || []) {
      const media = document.createElement("p");
      media.className = "media";
      media.textContent = "Picture: " + url;
      li.append(media);
    }
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = metaLine(message);
    li.append(meta);
    li.dataset.id = message.id;
    li.dataset.encoding = message.encoding;
    li.dataset.segments = String(message.segments);
  }

  function show(messages) {
    let added = false;
    for (const message of messages || []) {
      let li = items.get(message.id);
      if (!li) {
        li = document.createElement("li");
        items.set(message.id, li);
        thread.append(li);
        added = true;
      }
      fill(li, message);
    }
    if (added) {
      thread.scrollTop = thread.scrollHeight;
    }
  }

  function botCount() {
    return thread.querySelectorAll(".bubble.bot").length;
  }

  // Show or hide "typing"; when a wait ends, say whether the reply came.
  function setWaiting(now, seconds) {
    if (typeof seconds === "number") {
      waitSeconds = seconds;
    }
    if (now && !waiting) {
      botsBeforeWait = botCount();
    } else if (!now && waiting) {
      if (botCount() > botsBeforeWait) {
        say("The reply came through the Messages API.");
      } else {
        say("No reply within " + waitSeconds + " s (MODEL_TIMEOUT_SECONDS); one sent later still shows here.");
      }
    }
    waiting = Boolean(now);
    typing.hidden = !waiting;
    if (waiting) {
      thread.scrollTop = thread.scrollHeight;
    }
  }

  function schedule(delay) {
    window.clearTimeout(timer);
    timer = window.setTimeout(tick, delay);
  }

  async function tick() {
    await refresh();
    schedule(waiting ? WAITING_POLL_MS : POLL_MS);
  }

  function showOptState(optedOut) {
    if (optedOut === true || optedOut === false) {
      optState.hidden = !optedOut;
    }
  }

  async function refresh() {
    if (polling || !number || document.hidden) {
      return;
    }
    polling = true;
    const asked = generation;
    const sendsBefore = sends;
    try {
      const data = await post(phone.dataset.inboxUrl, { number: number });
      if (asked !== generation) {
        return;
      }
      if (data.error) {
        say(data.error, true);
        return;
      }
      show(data.messages);
      showOptState(data.opted_out);
      if (sendsBefore === sends && !sending) {
        setWaiting(data.waiting, data.wait_seconds);
      }
    } catch (error) {
      say("The bot is not answering (is make run still running?)", true);
    } finally {
      polling = false;
    }
  }

  async function send(text, picture) {
    if (sending) {
      return false;
    }
    sending = true;
    sendButton.disabled = true;
    say("Sending…");
    sends += 1;
    const asked = generation;
    try {
      const payload = { number: number, body: text };
      if (picture) {
        payload.media_url = picture;
      }
      const data = await post(phone.dataset.sendUrl, payload);
      if (asked !== generation) {
        return false;
      }
      if (data.error) {
        say(data.error, true);
        return false;
      }
      show(data.messages);
      showOptState(data.opted_out);
      say(data.note || "Delivered to the bot.");
      if (data.waiting) {
        setWaiting(true, data.wait_seconds);
        schedule(WAITING_POLL_MS);
      }
      return true;
    } catch (error) {
      say("The bot is not answering (is make run still running?)", true);
      return false;
    } finally {
      sending = false;
      sendButton.disabled = false;
    }
  }

  function useNumber(value) {
    number = value.trim();
    generation += 1;
    items.clear();
    thread.replaceChildren();
    optState.hidden = true;
    waiting = false;
    typing.hidden = true;
    say("Texting as " + number + ".");
    refresh();
  }

  numberForm.addEventListener("submit", function (event) {
    event.preventDefault();
    useNumber(numberInput.value);
    body.focus();
  });

  compose.addEventListener("submit", async function (event) {
    event.preventDefault();
    const picture = mediaUrl.value.trim();
    if (!body.value.trim() && !picture) {
      say("Write a text first.", true);
      body.focus();
      return;
    }
    if (await send(body.value, picture)) {
      body.value = "";
      mediaUrl.value = "";
      attach.open = false;
    }
    body.focus();
  });

  body.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      compose.requestSubmit();
    }
  });

  for (const button of document.querySelectorAll("[data-quick]")) {
    button.addEventListener("click", function () {
      send(button.dataset.quick, "");
    });
  }

  document.addEventListener("visibilitychange", refresh);
  tick();
})();
