/**
 * The 21 LongBench datasets (§8.1): prompt template (`config/dataset2prompt.json`), max new tokens
 * (`config/dataset2maxlen.json`), metric (`eval.py: dataset2metric`), and the per-task rules of `pred.py` and
 * `eval.py` (first line only, no chat template, samsum's newline stop). The 8 of the paper run by default.
 *
 *   longbenchTask('qasper').maxNewTokens  // 128
 */
import { CommvqError } from '../../errors.js';

export type LongBenchMetric = 'qa_f1' | 'qa_f1_zh' | 'rouge' | 'rouge_zh' | 'classification' | 'retrieval' | 'retrieval_zh' | 'count' | 'code_sim';

export interface LongBenchTask {
  name: string;
  prompt: string;
  maxNewTokens: number;
  metric: LongBenchMetric;
  /** eval.py scores `prediction.lstrip("\n").split("\n")[0]` for trec, triviaqa, samsum, lsht */
  firstLineOnly: boolean;
  /** pred.py builds no chat prompt for these even for chat models (few-shot and code tasks) */
  skipChatTemplate: boolean;
  /** samsum: stop at a newline as well as EOS, and generate at least one token */
  stopAtNewline: boolean;
  /** a LongBench-E version (`<name>_e`) exists */
  hasE: boolean;
}

/** The paper's (and KIVI's) 8 tasks, the default; the committed reference pred.py runs only qasper and samsum. */
export const LONGBENCH_DEFAULT_TASKS = ['qasper', 'qmsum', 'multi_news', 'trec', 'triviaqa', 'samsum', 'lcc', 'repobench-p'] as const;

const FIRST_LINE = new Set(['trec', 'triviaqa', 'samsum', 'lsht']);
const NO_CHAT = new Set(['trec', 'triviaqa', 'samsum', 'lsht', 'lcc', 'repobench-p']);
const HAS_E = new Set(['qasper', 'multifieldqa_en', 'hotpotqa', '2wikimqa', 'gov_report', 'multi_news', 'trec', 'triviaqa', 'samsum', 'passage_count', 'passage_retrieval_en', 'lcc', 'repobench-p']);

const PASSAGES_QA =
  'Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:';

const TABLE: [name: string, maxNewTokens: number, metric: LongBenchMetric, prompt: string][] = [
  [
    'narrativeqa',
    128,
    'qa_f1',
    'You are given a story, which can be either a novel or a movie script, and a question. Answer the question as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:',
  ],
  [
    'qasper',
    128,
    'qa_f1',
    'You are given a scientific article and a question. Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write "unanswerable". If the question is a yes/no question, answer "yes", "no", or "unanswerable". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:',
  ],
  [
    'multifieldqa_en',
    64,
    'qa_f1',
    'Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:',
  ],
  ['multifieldqa_zh', 64, 'qa_f1_zh', '阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}\n回答：'],
  ['hotpotqa', 32, 'qa_f1', PASSAGES_QA],
  ['2wikimqa', 32, 'qa_f1', PASSAGES_QA],
  ['musique', 32, 'qa_f1', PASSAGES_QA],
  ['dureader', 128, 'rouge_zh', '请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答：'],
  [
    'gov_report',
    512,
    'rouge',
    'You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:',
  ],
  [
    'qmsum',
    512,
    'rouge',
    'You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:',
  ],
  [
    'multi_news',
    512,
    'rouge',
    'You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:',
  ],
  ['vcsum', 512, 'rouge_zh', '下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：'],
  ['trec', 64, 'classification', 'Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}'],
  [
    'triviaqa',
    32,
    'qa_f1',
    'Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}',
  ],
  ['samsum', 128, 'rouge', 'Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}'],
  ['lsht', 64, 'classification', '请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}'],
  [
    'passage_count',
    32,
    'count',
    'There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ',
  ],
  [
    'passage_retrieval_en',
    32,
    'retrieval',
    'Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like "Paragraph 1", "Paragraph 2", etc.\n\nThe answer is: ',
  ],
  [
    'passage_retrieval_zh',
    32,
    'retrieval_zh',
    '以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n请输入摘要所属段落的编号。答案格式必须是"段落1"，"段落2"等格式\n\n答案是：',
  ],
  ['lcc', 64, 'code_sim', 'Please complete the code given below. \n{context}Next line of code:\n'],
  ['repobench-p', 64, 'code_sim', 'Please complete the code given below. \n{context}{input}Next line of code:\n'],
];

export const LONGBENCH_TASKS: ReadonlyMap<string, LongBenchTask> = new Map(
  TABLE.map(([name, maxNewTokens, metric, prompt]) => [
    name,
    {
      name,
      prompt,
      maxNewTokens,
      metric,
      firstLineOnly: FIRST_LINE.has(name),
      skipChatTemplate: NO_CHAT.has(name),
      stopAtNewline: name === 'samsum',
      hasE: HAS_E.has(name),
    },
  ]),
);

/** The task of that name; an unknown name is an error listing the known ones. */
export function longbenchTask(name: string): LongBenchTask {
  const task = LONGBENCH_TASKS.get(name);
  if (!task) throw new CommvqError(`unknown LongBench task '${name}'`, `known tasks: ${[...LONGBENCH_TASKS.keys()].join(', ')}`);
  return task;
}

/**
 * Parses a `--tasks` value: a comma list of names, 'default' (the 8) or 'all' (the 21). With `e` (LongBench-E),
 * 'default' and 'all' keep the tasks that have an E version (qmsum has none), and a named task without one is an
 * error.
 *
 *   parseLongbenchTasks('qasper,trec')  // [qasper, trec]
 */
export function parseLongbenchTasks(spec: string | undefined, options: { e?: boolean } = {}): LongBenchTask[] {
  const keyword = spec === undefined || spec === 'default' || spec === 'all';
  const names =
    spec === undefined || spec === 'default'
      ? [...LONGBENCH_DEFAULT_TASKS]
      : spec === 'all'
        ? [...LONGBENCH_TASKS.keys()]
        : spec
            .split(',')
            .map((s) => s.trim())
            .filter((s) => s !== '');
  if (names.length === 0) throw new CommvqError('no LongBench task given');
  let tasks = [...new Set(names)].map(longbenchTask);
  if (options.e) {
    if (keyword) tasks = tasks.filter((t) => t.hasE);
    const missing = tasks.filter((t) => !t.hasE).map((t) => t.name);
    if (missing.length > 0) throw new CommvqError(`LongBench-E has no version of ${missing.join(', ')}`, `LongBench-E tasks: ${[...HAS_E].join(', ')}`);
  }
  return tasks;
}
