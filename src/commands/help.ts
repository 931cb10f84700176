import { Args, Flags, loadHelpClass } from '@oclif/core';
import { BaseCommand } from '../cli/base-command.js';

/**
 * `commvq help [COMMAND]`: what @oclif/plugin-help adds, made from @oclif/core's own Help class (the one `--help`
 * uses), so the two print the same text and the toolkit needs no extra package (issue 17, item 10).
 */
export default class Help extends BaseCommand {
  static override summary = 'Show help for commvq, a topic or a command (the same text as --help).';
  static override enableJsonFlag = false;
  static override strict = false; // `help eval niah`: a command's words, as many as its topics need

  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help pipeline', '<%= config.bin %> help eval niah'];

  static override args = { command: Args.string({ description: 'a command or topic, e.g. pipeline or eval niah', required: false }) };

  static override flags = {
    'nested-commands': Flags.boolean({ char: 'n', description: 'list the commands under topics too' }),
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Help);
    const HelpClass = await loadHelpClass(this.config);
    await new HelpClass(this.config, { all: flags['nested-commands'] }).showHelp(argv as string[]);
  }
}
