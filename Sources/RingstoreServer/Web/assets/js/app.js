// The enrolment app: sign in with a student id, browse and search subjects with
// live seat numbers, enrol and drop, and see the week's timetable.
import {
  RingApi, serverOrigins, pageLink, hostOf, sleep, backoffDelay, isRetryable, isOutcomeUnknown, h, clockTime,
} from './api.js';
import { icon, toneIcon } from './icons.js';
import { renderGrid, renderList, whenText, byWeekOrder, minutes, DAY_NAMES } from './timetable.js';

const STUDENT_KEY = 'ringstore.enrolment.student';
const ID_PATTERN = /^s\d{7}$/;
const REFRESH_MS = 5000;
const TIMETABLE_REFRESH_TICKS = 6; // the timetable is re-read every 6th seat refresh (30 s)
const MAX_ATTEMPTS = 8;

const $ = (id) => document.getElementById(id);
const els = {
  connection: $('connection'),
  profile: $('profile'),
  profileName: $('profile-name'),
  profileId: $('profile-id'),
  profileProgram: $('profile-program'),
  signOut: $('sign-out'),
  signIn: $('sign-in'),
  signInForm: $('sign-in-form'),
  studentId: $('student-id'),
  signInButton: $('sign-in-button'),
  studentIdError: $('student-id-error'),
  welcome: $('welcome'),
  welcomeTitle: $('welcome-title'),
  welcomeName: $('welcome-name'),
  welcomeSummary: $('welcome-summary'),
  feedback: $('feedback'),
  layout: document.querySelector('.layout'),
  seatsUpdated: $('seats-updated'),
  refresh: $('refresh'),
  search: $('search'),
  termFilter: $('term-filter'),
  termOptions: $('term-options'),
  subjectsCount: $('subjects-count'),
  subjectsHint: $('subjects-hint'),
  subjectList: $('subject-list'),
  subjectsEmpty: $('subjects-empty'),
  subjectsLoading: $('subjects-loading'),
  timetable: $('timetable'),
  timetableSummary: $('timetable-summary'),
  timetableTerms: $('timetable-terms'),
  timetableGrid: $('timetable-grid'),
  timetableList: $('timetable-list'),
  timetableEmpty: $('timetable-empty'),
};

const api = new RingApi(serverOrigins());

const state = {
  student: null,
  subjects: new Map(), // code -> subject with seat numbers
  rows: new Map(), // code -> row elements
  enrolled: new Map(), // code -> subject
  pending: new Set(),
  query: '',
  term: 'all',
  timetableTerm: null,
  highlight: null,
  timetableLoaded: false,
  subjectsInFlight: null,
  loadedOnce: false,
  lastSeatsUpdate: null,
  ticks: 0,
};

// ---------------------------------------------------------------------------
// Feedback

let feedbackTimer = null;

/** Puts a message in the live region; success and info messages fade after a while. */
function say(text, tone = 'info', { keep = tone === 'warn' || tone === 'error' } = {}) {
  clearTimeout(feedbackTimer);
  const close = h('button', { type: 'button', class: 'btn btn-ghost btn-small message-close', 'aria-label': 'Dismiss message' }, icon('x'));
  close.addEventListener('click', () => {
    els.feedback.replaceChildren();
  });
  els.feedback.replaceChildren(
    h('div', { class: 'message', 'data-tone': tone, id: 'feedback-message' }, toneIcon(tone), h('p', { class: 'message-text' }, text), close),
  );
  if (!keep) {
    feedbackTimer = setTimeout(() => els.feedback.replaceChildren(), 10000);
  }
}

/** A short note under one subject, next to its button (not announced: the live region does that). */
function note(code, text, tone = 'info') {
  const row = state.rows.get(code);
  if (!row) return;
  row.note.hidden = !text;
  row.note.textContent = text || '';
  row.note.dataset.tone = tone;
}

function seconds(ms) {
  const s = Math.max(1, Math.round(ms / 1000));
  return `${s} s`;
}

// ---------------------------------------------------------------------------
// Connection indicator

api.addEventListener('connection', (event) => {
  const { origin, reachable } = event.detail;
  const primaryOrigin = api.origins[0];
  if (!reachable) {
    els.connection.dataset.state = 'down';
    els.connection.textContent = 'Cannot reach the service';
    els.connection.title = `Tried ${api.origins.map(hostOf).join(' and ')}`;
  } else if (origin !== primaryOrigin) {
    els.connection.dataset.state = 'switched';
    els.connection.textContent = `Connected via ${hostOf(origin)}`;
    els.connection.title = `${hostOf(primaryOrigin)} did not answer, so the page switched to ${hostOf(origin)}`;
  } else {
    els.connection.dataset.state = 'ok';
    els.connection.textContent = `Connected to ${hostOf(origin)}`;
    els.connection.title = `Ring servers: ${api.origins.map(hostOf).join(', ')}`;
  }
});

// ---------------------------------------------------------------------------
// Requests

/** A GET retried with backoff while no ring server can answer it. */
async function getWithRetry(path, { attempts = 3, timeoutMs = 6000 } = {}) {
  let result = null;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    result = await api.get(path, { timeoutMs });
    if (!isRetryable(result) && !isOutcomeUnknown(result)) return result;
    if (attempt < attempts) await sleep(backoffDelay(attempt, result.retryAfter, { base: 400, cap: 3000 }));
  }
  return result;
}

function studentPath(id) {
  return `/app/v1/students/${encodeURIComponent(id)}`;
}

// ---------------------------------------------------------------------------
// Subjects

function seatState(subject) {
  if (subject.seats_left <= 0) return 'full';
  if (subject.seats_left <= Math.max(3, Math.ceil(subject.capacity * 0.1))) return 'low';
  return 'ok';
}

function compareSubjects(a, b) {
  return a.term.localeCompare(b.term) || a.code.localeCompare(b.code);
}

function buildRow(subject) {
  const code = subject.code;
  const button = h('button', { type: 'button', class: 'btn subject-button', dataset: { code } });
  button.addEventListener('click', () => {
    changeEnrolment(code, state.enrolled.has(code) ? 'drop' : 'enrol');
  });
  const row = {
    li: h('li', { class: 'subject', id: `subject-${code}`, dataset: { code } }),
    code: h('span', { class: 'subject-code' }),
    term: h('span', { class: 'badge' }),
    enrolledBadge: h('span', { class: 'badge badge-ok', hidden: true }, icon('check'), 'Enrolled'),
    fullBadge: h('span', { class: 'badge badge-danger', hidden: true }, 'Full'),
    title: h('h3', { class: 'subject-title' }),
    when: h('span', { class: 'subject-when-text' }),
    seatsText: h('span', { class: 'seats-text' }),
    meter: h('span'),
    button,
    note: h('p', { class: 'subject-note', hidden: true }),
  };
  row.li.append(
    h(
      'div',
      { class: 'subject-info' },
      h('div', { class: 'subject-top' }, row.code, row.term, row.enrolledBadge, row.fullBadge),
      row.title,
      h('span', { class: 'subject-when' }, icon('clock'), row.when),
    ),
    h('div', { class: 'subject-seats' }, row.seatsText, h('div', { class: 'meter', 'aria-hidden': 'true' }, row.meter)),
    h('div', { class: 'subject-action' }, button),
    row.note,
  );
  return row;
}

function updateRow(code) {
  const row = state.rows.get(code);
  const subject = state.subjects.get(code);
  if (!row || !subject) return;
  const enrolled = state.enrolled.has(code);
  const pending = state.pending.has(code);
  const seats = seatState(subject);
  row.li.dataset.term = subject.term;
  row.li.dataset.day = subject.day;
  row.li.dataset.seats = seats;
  row.li.dataset.seatsLeft = String(subject.seats_left);
  row.li.classList.toggle('is-enrolled', enrolled);
  row.code.textContent = subject.code;
  row.term.textContent = subject.term;
  row.term.title = `Term ${subject.term}`;
  row.title.textContent = subject.title;
  row.when.textContent = `${DAY_NAMES[subject.day] || subject.day} ${subject.start}–${subject.end}`;
  row.enrolledBadge.hidden = !enrolled;
  row.fullBadge.hidden = seats !== 'full';
  if (seats === 'full') {
    row.seatsText.replaceChildren(`Full · ${subject.enrolled} of ${subject.capacity} taken`);
  } else {
    row.seatsText.replaceChildren(
      `${subject.seats_left} ${subject.seats_left === 1 ? 'seat' : 'seats'} left`,
      h('span', { class: 'of' }, ` of ${subject.capacity}`),
    );
  }
  const taken = subject.capacity > 0 ? Math.min(100, (subject.enrolled / subject.capacity) * 100) : 100;
  row.meter.style.width = `${taken}%`;

  const button = row.button;
  button.hidden = !state.student;
  // Busy buttons stay focusable (a disabled button would drop the keyboard focus); clicks are ignored.
  button.setAttribute('aria-disabled', String(pending));
  button.setAttribute('aria-busy', pending ? 'true' : 'false');
  button.classList.toggle('btn-primary', !enrolled);
  button.classList.toggle('btn-danger', enrolled);
  button.dataset.action = enrolled ? 'drop' : 'enrol';
  if (pending) {
    button.textContent = enrolled ? 'Dropping…' : 'Enrolling…';
  } else {
    button.textContent = enrolled ? 'Drop' : 'Enrol';
  }
  button.setAttribute('aria-label', `${button.textContent.replace('…', '')} ${enrolled ? '' : 'in '}${subject.code} ${subject.title}`.replace(/\s+/g, ' '));
}

function updateAllRows() {
  for (const code of state.rows.keys()) updateRow(code);
}

/** Takes in fresh subjects (the whole catalogue, or a few with new seat numbers). */
function mergeSubjects(list, { complete = false } = {}) {
  let added = false;
  for (const subject of list) {
    if (!subject || typeof subject.code !== 'string') continue;
    state.subjects.set(subject.code, subject);
    if (state.enrolled.has(subject.code)) state.enrolled.set(subject.code, subject);
    if (!state.rows.has(subject.code)) {
      state.rows.set(subject.code, buildRow(subject));
      added = true;
    }
  }
  if (complete) {
    const present = new Set(list.map((subject) => subject.code));
    for (const [code, row] of state.rows) {
      if (!present.has(code)) {
        row.li.remove();
        state.rows.delete(code);
        state.subjects.delete(code);
      }
    }
  }
  if (added) {
    const ordered = [...state.subjects.values()].sort(compareSubjects);
    els.subjectList.append(...ordered.map((subject) => state.rows.get(subject.code).li));
    renderTermOptions();
  }
  for (const subject of list) updateRow(subject.code);
  applyFilter();
}

function renderTermOptions() {
  const terms = [...new Set([...state.subjects.values()].map((subject) => subject.term))].sort();
  els.termFilter.hidden = terms.length < 2;
  if (state.term !== 'all' && !terms.includes(state.term)) state.term = 'all';
  els.termOptions.replaceChildren(
    ...['all', ...terms].map((term) => {
      const button = h(
        'button',
        { type: 'button', 'aria-pressed': String(state.term === term), dataset: { term } },
        term === 'all' ? 'All' : term,
      );
      button.addEventListener('click', () => {
        state.term = term;
        for (const other of els.termOptions.querySelectorAll('button')) {
          other.setAttribute('aria-pressed', String(other.dataset.term === term));
        }
        applyFilter({ announceNow: true });
      });
      return button;
    }),
  );
}

let countTimer = null;

function applyFilter({ announceNow = false } = {}) {
  const tokens = state.query.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const [code, row] of state.rows) {
    const subject = state.subjects.get(code);
    const text = `${subject.code} ${subject.title}`.toLowerCase();
    const match = tokens.every((token) => text.includes(token)) && (state.term === 'all' || subject.term === state.term);
    row.li.hidden = !match;
    if (match) shown += 1;
  }
  const total = state.rows.size;
  const query = state.query.trim();
  els.subjectsEmpty.hidden = !state.loadedOnce || shown > 0;
  if (shown === 0 && state.loadedOnce) {
    els.subjectsEmpty.textContent = query
      ? `No subjects match “${query}”. Try a code such as COMP2000 or a word from the title.`
      : 'No subjects in this term.';
  }
  const countText = !state.loadedOnce
    ? ''
    : shown === total
      ? `${total} subjects`
      : `Showing ${shown} of ${total} subjects${query ? ` matching “${query}”` : ''}${state.term !== 'all' ? ` in ${state.term}` : ''}`;
  // The count is a live region: while someone types, only the settled count is announced.
  clearTimeout(countTimer);
  if (announceNow) els.subjectsCount.textContent = countText;
  else countTimer = setTimeout(() => { els.subjectsCount.textContent = countText; }, 350);
}

/** Reads every subject with its live seat numbers. Returns whether it worked. */
function loadSubjects({ announce = false } = {}) {
  if (state.subjectsInFlight) return state.subjectsInFlight;
  state.subjectsInFlight = (async () => {
    const result = await api.get('/app/v1/subjects', { timeoutMs: 6000 });
    if (result.kind === 'http' && result.ok && result.data && Array.isArray(result.data.subjects)) {
      const first = !state.loadedOnce;
      state.loadedOnce = true;
      els.subjectsLoading.hidden = true;
      mergeSubjects(result.data.subjects, { complete: true });
      if (first) applyFilter({ announceNow: true });
      state.lastSeatsUpdate = new Date();
      els.seatsUpdated.textContent = `Seats as of ${clockTime(state.lastSeatsUpdate)}`;
      if (announce) say('Seat numbers are up to date.', 'info');
      return true;
    }
    const reason = result.kind === 'http' && result.data && result.data.message ? result.data.message : 'the cluster did not answer';
    if (!state.loadedOnce) {
      els.subjectsLoading.hidden = false;
      els.subjectsLoading.textContent = `Can't load the subjects right now (${reason}). Retrying every few seconds…`;
    } else {
      els.seatsUpdated.textContent = state.lastSeatsUpdate
        ? `Couldn't refresh seats; last update ${clockTime(state.lastSeatsUpdate)}`
        : "Couldn't refresh seats";
    }
    if (announce) say(`Couldn't refresh the seat numbers: ${reason}. Retrying automatically.`, 'warn');
    return false;
  })().finally(() => {
    state.subjectsInFlight = null;
  });
  return state.subjectsInFlight;
}

// ---------------------------------------------------------------------------
// Timetable

function renderTimetable() {
  const subjects = [...state.enrolled.values()].sort(byWeekOrder);
  const terms = [...new Set(subjects.map((subject) => subject.term))].sort();
  if (!terms.includes(state.timetableTerm)) state.timetableTerm = terms[0] ?? null;
  const shown = subjects.filter((subject) => subject.term === state.timetableTerm);

  els.timetableTerms.replaceChildren(
    ...(terms.length > 1
      ? terms.map((term) => {
        const count = subjects.filter((subject) => subject.term === term).length;
        const button = h('button', { type: 'button', 'aria-pressed': String(term === state.timetableTerm), dataset: { term } }, `${term} (${count})`);
        button.addEventListener('click', () => {
          state.timetableTerm = term;
          renderTimetable();
          els.timetableTerms.querySelector(`[data-term="${term}"]`)?.focus();
        });
        return button;
      })
      : []),
  );

  const empty = subjects.length === 0;
  els.timetableEmpty.hidden = !empty;
  els.timetableEmpty.textContent = state.timetableLoaded
    ? 'Nothing here yet. Enrol in a subject and it shows up in your week.'
    : 'Loading your timetable…';
  els.timetableGrid.hidden = empty;
  els.timetableList.hidden = empty;
  renderGrid(els.timetableGrid, shown, { highlight: state.highlight });
  renderList(els.timetableList, shown);
  state.highlight = null;

  const hours = subjects.reduce((sum, subject) => sum + Math.max(0, minutes(subject.end) - minutes(subject.start)) / 60, 0);
  els.timetableSummary.textContent = empty
    ? ''
    : `${subjects.length} ${subjects.length === 1 ? 'subject' : 'subjects'} · ${formatHours(hours)}${terms.length > 1 ? '' : ` · ${terms[0]}`}`;
  if (state.student && !state.timetableLoaded) {
    els.welcomeSummary.textContent = `${state.student.program}. Loading your timetable…`;
  } else if (state.student) {
    els.welcomeSummary.textContent = empty
      ? `${state.student.program}. You are not enrolled in any subject yet.`
      : `${state.student.program}. You are enrolled in ${subjects.length} ${subjects.length === 1 ? 'subject' : 'subjects'}: ${subjects.map((subject) => subject.code).join(', ')}.`;
  }
}

function formatHours(hours) {
  const rounded = Math.round(hours * 10) / 10;
  return `${rounded} ${rounded === 1 ? 'hour' : 'hours'} a week`;
}

/** Reads the student's timetable. Returns whether it worked. */
async function loadEnrolments() {
  const student = state.student;
  if (!student) return false;
  const result = await getWithRetry(`${studentPath(student.id)}/enrolments`, { attempts: 3 });
  if (state.student !== student) return false;
  if (result.kind === 'http' && result.ok && result.data && Array.isArray(result.data.subjects)) {
    state.enrolled = new Map(result.data.subjects.map((subject) => [subject.code, subject]));
    state.timetableLoaded = true;
    mergeSubjects(result.data.subjects);
    updateAllRows();
    renderTimetable();
    return true;
  }
  if (result.kind === 'http' && (result.status === 404 || result.status === 400)) {
    signOut({ message: `Your student record ${student.id} could not be found any more. Please sign in again.`, tone: 'error' });
  }
  return false;
}

// ---------------------------------------------------------------------------
// Enrol and drop

async function changeEnrolment(code, action) {
  const student = state.student;
  if (!student || state.pending.has(code)) return;
  const subject = state.subjects.get(code);
  const label = `${code} ${subject.title}`;
  const enrol = action === 'enrol';
  const path = `${studentPath(student.id)}/enrolments/${encodeURIComponent(code)}`;
  state.pending.add(code);
  updateRow(code);
  note(code, null);
  // Whether an earlier attempt may have reached the cluster (an answer lost on the way).
  let mayHaveApplied = false;
  try {
    for (let attempt = 1; ; attempt += 1) {
      const result = await api.request(enrol ? 'POST' : 'DELETE', path, { timeoutMs: 12000 });
      if (state.student !== student) return;
      if (result.afterFailure) mayHaveApplied = true;

      if (isOutcomeUnknown(result)) {
        mayHaveApplied = true;
        say(`The cluster could not confirm whether ${enrol ? `your enrolment in ${code}` : `dropping ${code}`} went through. Checking your timetable…`, 'warn');
        note(code, 'Not confirmed — checking your timetable…', 'warn');
        const checked = await loadEnrolments();
        if (state.student !== student) return;
        if (checked && state.enrolled.has(code) === enrol) {
          finishSuccess(code, enrol, `Checked your timetable: ${enrol ? `you are enrolled in ${label}` : `${label} is dropped`}.`);
          return;
        }
        if (attempt >= MAX_ATTEMPTS) {
          const truth = checked
            ? `Your timetable shows you are ${enrol ? 'not enrolled in' : 'still enrolled in'} ${label}.`
            : 'We could not read your timetable to check.';
          say(`${truth} The cluster is having trouble; please try again in a minute.`, 'error');
          note(code, checked ? (enrol ? 'Not enrolled.' : 'Still enrolled.') : 'Not confirmed.', 'error');
          return;
        }
        const delay = backoffDelay(attempt, result.retryAfter);
        say(checked
          ? `Checked your timetable: ${enrol ? 'not enrolled in' : 'still enrolled in'} ${code} yet. Trying again in ${seconds(delay)} (attempt ${attempt + 1} of ${MAX_ATTEMPTS})…`
          : `Could not read your timetable to check ${code}. Trying again in ${seconds(delay)} (attempt ${attempt + 1} of ${MAX_ATTEMPTS})…`, 'warn');
        await sleep(delay);
        continue;
      }

      if (isRetryable(result)) {
        if (result.kind === 'network') mayHaveApplied = true;
        if (attempt >= MAX_ATTEMPTS) {
          await giveUp(code, label, enrol, mayHaveApplied);
          return;
        }
        const delay = backoffDelay(attempt, result.retryAfter);
        say(`Cluster unreachable — retrying ${enrol ? `your enrolment in ${code}` : `dropping ${code}`} in ${seconds(delay)} (attempt ${attempt + 1} of ${MAX_ATTEMPTS})…`, 'warn');
        note(code, 'Cluster unreachable — retrying…', 'warn');
        await sleep(delay);
        continue;
      }

      await handleAnswer(code, label, enrol, result, mayHaveApplied);
      return;
    }
  } finally {
    state.pending.delete(code);
    updateRow(code);
  }
}

/** After the last attempt: tell what the timetable says, if it can be read. */
async function giveUp(code, label, enrol, mayHaveApplied) {
  if (mayHaveApplied && (await loadEnrolments())) {
    if (state.enrolled.has(code) === enrol) {
      finishSuccess(code, enrol, `${enrol ? `Enrolled in ${label}` : `Dropped ${label}`} (confirmed from your timetable).`);
      return;
    }
  }
  say(`We could not reach the cluster after ${MAX_ATTEMPTS} tries, so ${code} was not ${enrol ? 'added to' : 'dropped from'} your timetable. Please try again in a moment.`, 'error');
  note(code, enrol ? 'Not enrolled — the cluster was unreachable.' : 'Not dropped — the cluster was unreachable.', 'error');
}

function finishSuccess(code, enrol, text) {
  const subject = state.subjects.get(code);
  if (enrol) {
    state.enrolled.set(code, subject);
    state.highlight = code;
    state.timetableTerm = subject.term;
  } else {
    state.enrolled.delete(code);
  }
  updateRow(code);
  renderTimetable();
  say(text, 'success');
  note(code, enrol ? 'Enrolled — it is on your timetable.' : 'Dropped.', 'success');
}

async function handleAnswer(code, label, enrol, result, mayHaveApplied) {
  const data = result.data || {};
  const subject = state.subjects.get(code);
  if (result.ok) {
    if (data.subject) mergeSubjects([data.subject]);
    const fresh = state.subjects.get(code);
    if (enrol) {
      const left = fresh.seats_left;
      finishSuccess(code, true, `Enrolled in ${label}, ${DAY_NAMES[fresh.day] || fresh.day} ${fresh.start}–${fresh.end}. ${left} ${left === 1 ? 'seat' : 'seats'} left.`);
    } else {
      finishSuccess(code, false, `Dropped ${label}. Your seat is free for someone else.`);
    }
    return;
  }
  switch (data.error) {
    case 'already_enrolled':
      finishSuccess(code, true, mayHaveApplied ? `Enrolled in ${label}.` : `You are already enrolled in ${label}.`);
      loadEnrolments();
      return;
    case 'not_enrolled':
      finishSuccess(code, false, mayHaveApplied ? `Dropped ${label}.` : `You were not enrolled in ${label}; nothing to drop.`);
      loadEnrolments();
      return;
    case 'subject_full': {
      const capacity = Number.isFinite(data.capacity) ? data.capacity : subject.capacity;
      const taken = Number.isFinite(data.enrolled) ? data.enrolled : capacity;
      mergeSubjects([{ ...subject, capacity, enrolled: taken, seats_left: Math.max(0, capacity - taken) }]);
      say(`${label} is full: ${taken} of ${capacity} seats are taken. You have not been enrolled.`, 'error');
      note(code, `Full — ${taken} of ${capacity} seats taken.`, 'error');
      return;
    }
    case 'timetable_clash': {
      const other = data.clash_with;
      if (other && other.code) {
        say(`${code} clashes with ${other.code} ${other.title} (${whenText(other)}), which is on your timetable. Drop ${other.code} first if you would rather take ${code}.`, 'error');
        note(code, `Clashes with ${other.code} ${other.title} (${whenText(other)}).`, 'error');
        if (!state.enrolled.has(other.code)) loadEnrolments();
      } else {
        say(data.message || `${code} clashes with a subject on your timetable.`, 'error');
        note(code, 'Clashes with your timetable.', 'error');
      }
      return;
    }
    case 'subject_not_found':
      say(`${code} is no longer in the catalogue.`, 'error');
      loadSubjects();
      return;
    case 'student_not_found':
    case 'invalid_student_id':
      signOut({ message: 'Your student ID was not recognised. Please sign in again.', tone: 'error' });
      return;
    default: {
      const text = data.message || `The server answered ${result.status}.`;
      say(`${enrol ? 'Could not enrol in' : 'Could not drop'} ${code}: ${text}`, 'error');
      note(code, text, 'error');
    }
  }
}

// ---------------------------------------------------------------------------
// Signing in and out

function showFieldError(text) {
  els.studentIdError.textContent = text;
  els.studentIdError.hidden = !text;
  els.studentId.setAttribute('aria-invalid', text ? 'true' : 'false');
}

async function signIn(raw, { restoring = false } = {}) {
  const typed = String(raw || '').trim();
  const id = typed.toLowerCase();
  if (!ID_PATTERN.test(id)) {
    showFieldError(typed
      ? `“${typed}” is not a student ID. A student ID is the letter s followed by 7 digits, like s1000001.`
      : 'Enter your student ID, like s1000001.');
    els.studentId.focus();
    return;
  }
  if (els.signInButton.getAttribute('aria-busy') === 'true') return;
  showFieldError('');
  els.signInButton.setAttribute('aria-disabled', 'true');
  els.signInButton.setAttribute('aria-busy', 'true');
  els.signInButton.textContent = 'Signing in…';
  try {
    const result = await getWithRetry(studentPath(id), { attempts: 4 });
    if (result.kind === 'http' && result.ok && result.data && result.data.id) {
      setStudent(result.data, { restoring });
      return;
    }
    if (result.kind === 'http' && result.status === 404) {
      sessionStorage.removeItem(STUDENT_KEY);
      showFieldError(`We could not find student ${id}. Check the number on your student card.`);
    } else if (result.kind === 'http' && result.status === 400) {
      showFieldError(result.data && result.data.message ? result.data.message : `“${typed}” is not a student ID.`);
    } else {
      showFieldError("We can't reach the enrolment service right now. Please try again in a moment.");
    }
    if (restoring) els.studentId.value = id;
    else els.studentId.focus();
  } finally {
    els.signInButton.setAttribute('aria-disabled', 'false');
    els.signInButton.setAttribute('aria-busy', 'false');
    els.signInButton.textContent = 'Sign in';
  }
}

function setStudent(student, { restoring = false } = {}) {
  state.student = student;
  state.enrolled = new Map();
  state.timetableLoaded = false;
  sessionStorage.setItem(STUDENT_KEY, student.id);
  els.profileName.textContent = student.name;
  els.profileId.textContent = student.id;
  els.profileProgram.textContent = student.program;
  els.profile.hidden = false;
  els.signIn.hidden = true;
  els.welcome.hidden = false;
  els.welcomeName.textContent = student.name;
  els.welcomeSummary.textContent = `${student.program}. Loading your timetable…`;
  els.timetable.hidden = false;
  els.layout.classList.add('with-timetable');
  els.subjectsHint.textContent = 'Choose Enrol to add a subject to your timetable. Seat numbers refresh every 5 seconds.';
  updateAllRows();
  renderTimetable();
  loadEnrolments();
  if (!restoring) {
    say(`Signed in as ${student.name} (${student.id}).`, 'success');
    els.welcomeTitle.setAttribute('tabindex', '-1');
    els.welcomeTitle.focus();
  }
}

function signOut({ message = 'You have signed out.', tone = 'info' } = {}) {
  state.student = null;
  state.enrolled = new Map();
  sessionStorage.removeItem(STUDENT_KEY);
  els.profile.hidden = true;
  els.signIn.hidden = false;
  els.welcome.hidden = true;
  els.timetable.hidden = true;
  els.layout.classList.remove('with-timetable');
  els.subjectsHint.textContent = 'Sign in to enrol. Seat numbers refresh every 5 seconds.';
  els.studentId.value = '';
  showFieldError('');
  for (const code of state.rows.keys()) note(code, null);
  updateAllRows();
  say(message, tone);
  els.studentId.focus();
}

// ---------------------------------------------------------------------------
// Wiring

els.signInForm.addEventListener('submit', (event) => {
  event.preventDefault();
  signIn(els.studentId.value);
});

els.studentId.addEventListener('input', () => {
  if (els.studentId.getAttribute('aria-invalid') === 'true') showFieldError('');
});

els.signOut.addEventListener('click', () => signOut());

els.search.addEventListener('input', () => {
  state.query = els.search.value;
  applyFilter();
});

els.search.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && els.search.value) {
    els.search.value = '';
    state.query = '';
    applyFilter({ announceNow: true });
  }
});

els.refresh.addEventListener('click', async () => {
  if (els.refresh.getAttribute('aria-busy') === 'true') return;
  els.refresh.setAttribute('aria-disabled', 'true');
  els.refresh.setAttribute('aria-busy', 'true');
  try {
    await Promise.all([loadSubjects({ announce: true }), state.student ? loadEnrolments() : null]);
  } finally {
    els.refresh.setAttribute('aria-disabled', 'false');
    els.refresh.setAttribute('aria-busy', 'false');
  }
});

for (const link of [document.getElementById('dashboard-link'), document.getElementById('home-link')]) {
  if (link) link.href = pageLink(new URL(link.href).pathname);
}

setInterval(() => {
  if (document.hidden) return;
  state.ticks += 1;
  loadSubjects();
  if (state.student && state.ticks % TIMETABLE_REFRESH_TICKS === 0 && state.pending.size === 0) loadEnrolments();
}, REFRESH_MS);

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) {
    loadSubjects();
    if (state.student && state.pending.size === 0) loadEnrolments();
  }
});

loadSubjects();
const remembered = sessionStorage.getItem(STUDENT_KEY);
if (remembered && ID_PATTERN.test(remembered)) {
  els.studentId.value = remembered;
  signIn(remembered, { restoring: true });
}
