/**
 * The InfiniteBench tasks (§8.2): the intended llama templates, max new tokens, and which 9 the paper reports.
 *
 * Departure from the literal reference, recorded with every result: the reference's eval_commvq.py hard-codes a
 * model name with no template entry, so its prompt is only `example["context"]` and the question and options are
 * dropped. We use the llama templates its run scripts intended (`--model_name long-kv`). The spec gives them for the
 * 9 paper tasks; for longbook_qa_chn, math_calc and code_run (supported, not run by the paper) it gives none, and
 * we use InfiniteBench's own open-model ("yarn-mistral") templates for those three.
 *
 *   infinitebenchTask('passkey').maxNewTokens  // 6
 */
import { CommvqError } from '../../errors.js';

export interface InfiniteBenchTask {
  name: string;
  template: string;
  maxNewTokens: number;
  /** reported in the paper (the default set) */
  paper: boolean;
  /** where the template comes from */
  templateSource: 'llama (spec §8.2)' | 'yarn-mistral (InfiniteBench prompt.py)';
}

export const INFINITEBENCH_PAPER_TASKS = [
  'passkey',
  'number_string',
  'kv_retrieval',
  'longbook_sum_eng',
  'longbook_choice_eng',
  'longbook_qa_eng',
  'longdialogue_qa_eng',
  'math_find',
  'code_debug',
] as const;

/** Recorded in every InfiniteBench result. */
export const INFINITEBENCH_PROMPT_NOTE =
  'prompts use the intended llama templates; the reference eval_commvq.py feeds only example["context"] (question and options dropped)';

const LLAMA: Record<string, string> = {
  passkey:
    'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information.\n\n{context}\n\n{input}\n\nThe pass key is',
  number_string: 'There is an important info hidden inside a lot of irrelevant text. Find it. I will quiz you about the important information there.\n\n{context}\n\n{input}',
  kv_retrieval: 'Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}',
  longbook_sum_eng: 'Summarize the book below.\n\n{context}\n\nSummary:',
  longbook_choice_eng:
    'Read the book and answer the question.\n\n{context}\n\nQuestion: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe letter of the correct answer is',
  longbook_qa_eng: 'Read the book and answer the question. Be very concise in your answer.\n\n{context}\n\nQuestion: {question}\nAnswer:',
  longdialogue_qa_eng:
    'Below is a dialogue script where one random occurrence of a character name is replaced with "$$MASK$$", and you should try to guess who that character is.\n\n{context}\n\nThe name that has been replaced with $$MASK$$ is likely',
  math_find: '{prefix}\n\n{context}\n\n{input}',
  code_debug:
    'Following is a Python code where exactly one of the functions/methods has a deliberate error that makes it crash.\n\n{context}\n\nOptions:\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe correct option is:',
};

const YARN_MISTRAL: Record<string, string> = {
  longbook_qa_chn: '阅读以下书籍然后回答问题。\n\n{context}\n\n问题：{question}\n答案：',
  math_calc:
    'Let us calculate the intermediate values of an expression.\n\nExpression: 1 + 3 + 4\nValues: [1, 4, 8]\n\nExpression: 8 - 3 + 2 - 4\nValues: [8, 5, 7, 3]\n\nExpression: {context}\nValues:',
  code_run: 'There is a function called {func} in the following Python code.\n\n{context}\n\nPlease compute the exact value of {func_call}. The value of {func_call} is',
};

const MAX_NEW_TOKENS: Record<string, number> = {
  passkey: 6,
  number_string: 12,
  kv_retrieval: 50,
  longbook_sum_eng: 1200,
  longbook_choice_eng: 40,
  longbook_qa_eng: 40,
  longbook_qa_chn: 40,
  longdialogue_qa_eng: 40,
  math_find: 3,
  math_calc: 30000,
  code_run: 5,
  code_debug: 5,
};

export const INFINITEBENCH_TASKS: ReadonlyMap<string, InfiniteBenchTask> = new Map(
  Object.keys(MAX_NEW_TOKENS).map((name) => {
    const llama = LLAMA[name];
    const task: InfiniteBenchTask = {
      name,
      template: llama ?? YARN_MISTRAL[name],
      maxNewTokens: MAX_NEW_TOKENS[name],
      paper: (INFINITEBENCH_PAPER_TASKS as readonly string[]).includes(name),
      templateSource: llama ? 'llama (spec §8.2)' : 'yarn-mistral (InfiniteBench prompt.py)',
    };
    return [name, task];
  }),
);

/** The task of that name; an unknown name is an error listing the known ones. */
export function infinitebenchTask(name: string): InfiniteBenchTask {
  const task = INFINITEBENCH_TASKS.get(name);
  if (!task) throw new CommvqError(`unknown InfiniteBench task '${name}'`, `known tasks: ${[...INFINITEBENCH_TASKS.keys()].join(', ')}`);
  return task;
}

/** `--tasks`: a comma list, 'default' (the paper's 9) or 'all' (the 12). */
export function parseInfinitebenchTasks(spec: string | undefined): InfiniteBenchTask[] {
  const names =
    spec === undefined || spec === 'default'
      ? [...INFINITEBENCH_PAPER_TASKS]
      : spec === 'all'
        ? [...INFINITEBENCH_TASKS.keys()]
        : spec
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== '');
  if (names.length === 0) throw new CommvqError('no InfiniteBench task given');
  return [...new Set(names)].map(infinitebenchTask);
}
