// londonsde security tier: in a project of the "high" security tier, nothing is copied out of JupyterLab to
// the clipboard and no more than a small amount is pasted (or dropped) in.
//
// The tier and the paste limit come from the page config, which the server extension londonsde_security_tier
// (same folder) fills from the environment the spawner set. The extension is inert only when the page config
// says "standard": a page without the setting is treated as high (fail closed).
//
// What is blocked, all in the capture phase on the window (so before JupyterLab, CodeMirror or Lumino see it),
// and the same in every frame the page can reach (frames it cannot reach take no pointer or keyboard focus):
//   - copy and cut events: the event is cancelled with empty clipboard data, so the browser writes nothing
//     (this also covers JupyterLab's own copy commands, which write through a copy event or execCommand);
//   - the asynchronous clipboard API (navigator.clipboard.write/writeText) refuses;
//   - native drag of a selection out of the page (dragstart);
//   - paste and drop events carrying files, or text longer than the limit; navigator.clipboard.read/readText
//     refuse, and readText also refuses a text over the limit.
// What cannot be blocked by software: what a person reads off the screen (docs/workspaces.md says so).

const TIER_KEY = 'londonsdeSecurityTier';
const PASTE_LIMIT_KEY = 'londonsdePasteLimit';
const DEFAULT_PASTE_LIMIT = 2000;

const COPY_MESSAGE = 'Copying out of this workspace is turned off: this project is in the high security tier. ' +
  'Results leave only through an output request.';
const PASTE_MESSAGE = (limit) =>
  `Paste refused: this project is in the high security tier, which allows pasting at most ${limit} ` +
  'characters of text and no files.';

function pageConfig() {
  // The same JSON that @jupyterlab/coreutils' PageConfig reads; read directly so the bundle shares nothing.
  const element = document.getElementById('jupyter-config-data');
  if (!element) {
    return {};
  }
  try {
    return JSON.parse(element.textContent || '{}');
  } catch (error) {
    return {};
  }
}

function pasteLimit(config) {
  const value = Number(config[PASTE_LIMIT_KEY]);
  return Number.isInteger(value) && value >= 0 ? value : DEFAULT_PASTE_LIMIT;
}

// Is this clipboard or drag data too much to let in? Files never come in; text up to the limit does.
function tooMuch(dataTransfer, limit) {
  if (!dataTransfer) {
    return false;
  }
  if (dataTransfer.files && dataTransfer.files.length > 0) {
    return true;
  }
  const types = Array.from(dataTransfer.types || []);
  if (types.includes('Files')) {
    return true;
  }
  // Every textual flavour counts: HTML can carry more than its plain-text twin.
  for (const type of types) {
    if (type.startsWith('text/') || type === 'application/json') {
      if ((dataTransfer.getData(type) || '').length > limit) {
        return true;
      }
    }
  }
  return false;
}

function install(app, limit) {
  const lastNotice = new Map();
  const notify = (message) => {
    // The same notice once a second at most: a held key or a drag would otherwise flood the screen.
    const now = Date.now();
    if (now - (lastNotice.get(message) || 0) < 1000) {
      return;
    }
    lastNotice.set(message, now);
    if (app && app.commands && app.commands.hasCommand('apputils:notify')) {
      app.commands.execute('apputils:notify', { message, type: 'warning', options: { autoClose: 6000 } })
        .catch(() => undefined);
    } else {
      window.console.warn(message);
    }
  };
  const guarded = new WeakSet(); // documents already guarded (a frame that navigates gets a new one)

  const refuseCopy = (event) => {
    if (event.clipboardData) {
      event.clipboardData.clearData();
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    notify(COPY_MESSAGE);
  };
  const refuseDrag = (event) => {
    event.preventDefault();
    event.stopImmediatePropagation();
    notify(COPY_MESSAGE);
  };
  const guardIn = (event) => {
    const data = event.clipboardData || event.dataTransfer;
    if (tooMuch(data, limit)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      notify(PASTE_MESSAGE(limit));
    }
  };

  const guardClipboard = (win) => {
    const clipboard = win.navigator && win.navigator.clipboard;
    if (!clipboard) {
      return;
    }
    const readText = clipboard.readText ? clipboard.readText.bind(clipboard) : null;
    const replace = (name, value) => {
      try {
        Object.defineProperty(clipboard, name, { value, configurable: false, writable: false });
      } catch (error) {
        window.console.warn('londonsde: could not guard navigator.clipboard.' + name);
      }
    };
    const refusedOut = () => {
      notify(COPY_MESSAGE);
      return Promise.reject(new DOMException(COPY_MESSAGE, 'NotAllowedError'));
    };
    replace('write', refusedOut);
    replace('writeText', refusedOut);
    // read() hands over files and rich data whose size cannot be judged before it is read: refused.
    replace('read', () => {
      notify(PASTE_MESSAGE(limit));
      return Promise.reject(new DOMException(PASTE_MESSAGE(limit), 'NotAllowedError'));
    });
    replace('readText', async () => {
      if (!readText) {
        throw new DOMException(PASTE_MESSAGE(limit), 'NotAllowedError');
      }
      const text = await readText();
      if (text.length > limit) {
        notify(PASTE_MESSAGE(limit));
        throw new DOMException(PASTE_MESSAGE(limit), 'NotAllowedError');
      }
      return text;
    });
  };

  // Frames (an output's <iframe>, JupyterLab's viewers) are documents of their own whose events never reach the
  // page's window: a frame we can reach is guarded like the page; one we cannot (another origin, or sandboxed
  // without same-origin) takes no pointer or keyboard focus, so nothing in it can be selected to copy.
  const guardFrame = (frame) => {
    const attach = () => {
      let inner = null;
      try {
        inner = frame.contentWindow && frame.contentWindow.document ? frame.contentWindow : null;
      } catch (error) {
        inner = null;
      }
      if (inner) {
        guardWindow(inner);
      } else {
        frame.style.pointerEvents = 'none';
        frame.setAttribute('tabindex', '-1');
      }
    };
    frame.addEventListener('load', attach);
    attach();
  };
  const guardFramesIn = (node) => {
    if (node.nodeType !== 1) {
      return;
    }
    if (node.tagName === 'IFRAME' || node.tagName === 'FRAME') {
      guardFrame(node);
    }
    node.querySelectorAll('iframe, frame').forEach(guardFrame);
  };

  function guardWindow(win) {
    const doc = win.document;
    if (!doc || guarded.has(doc)) {
      return;
    }
    guarded.add(doc);
    win.addEventListener('copy', refuseCopy, true);
    win.addEventListener('cut', refuseCopy, true);
    win.addEventListener('dragstart', refuseDrag, true);
    win.addEventListener('paste', guardIn, true);
    win.addEventListener('drop', guardIn, true);
    guardClipboard(win);
    if (doc.documentElement) {
      guardFramesIn(doc.documentElement);
      new win.MutationObserver((records) => {
        for (const record of records) {
          record.addedNodes.forEach(guardFramesIn);
        }
      }).observe(doc.documentElement, { childList: true, subtree: true });
    }
  }

  guardWindow(window);
  if (document.body) {
    document.body.dataset.londonsdeSecurityTier = 'high';
  }
}

const plugin = {
  id: '@londonsde/security-tier:plugin',
  description: 'High security tier: no copy out of JupyterLab, and only small pastes in.',
  autoStart: true,
  activate: (app) => {
    const config = pageConfig();
    if (config[TIER_KEY] === 'standard') {
      if (document.body) {
        document.body.dataset.londonsdeSecurityTier = 'standard';
      }
      return;
    }
    install(app, pasteLimit(config));
  }
};

export default plugin;
